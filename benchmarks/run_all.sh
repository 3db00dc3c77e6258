#!/usr/bin/env bash
# The README results: every task over ../shared/data, the shipped students (weights/*.pt) next to
# SIFT, RootSIFT and the official DesDis-8/16/32 and TFeat-liberty checkpoints, one command per task.
# Sizes fit a half-hour budget on a shared 2-core machine: pose on sacre_coeur (45 pairs), sfm on
# Herz-Jesus-P8, 200 patches per generated HPatches-style sequence; every task takes more data.
#
#   nice -n 10 benchmarks/run_all.sh [OUT]        (OUT: default outputs/benchmarks)
#
# Environment: SHARED (default ../shared), PYTHON (default .venv/bin/python).
# Writes OUT/<task>.{json,md,png}, OUT/commands.txt (each command and its wall time) and OUT/RESULTS.md
# (all tables); 20 minutes with 9 methods on 2 shared CPU cores (see benchmarks/RESULTS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-outputs/benchmarks}
SHARED=${SHARED:-../shared}
PYTHON=${PYTHON:-.venv/bin/python}
TEACHERS=$SHARED/teachers
OFFICIAL=$TEACHERS/desdis-official/DesDis-8.pth,$TEACHERS/desdis-official/DesDis-16.pth,$TEACHERS/desdis-official/DesDis-32.pth,$TEACHERS/tfeat/tfeat-liberty.params
mkdir -p "$OUT"
PATCHES=$(mktemp -d)
trap 'rm -rf "$PATCHES"' EXIT

bench() {  # bench TASK ARGS...: run one task, write OUT/TASK.{json,md,png}, log its wall time;
    local task=$1 status=0  # a failed task is logged and the others still run
    shift
    local start=$SECONDS
    echo "== $task: python -m benchmarks $task $*" | tee -a "$OUT/commands.txt"
    "$PYTHON" -m benchmarks "$task" "$@" --json "$OUT/$task.json" --markdown "$OUT/$task.md" \
        --plot "$OUT/$task.png" || status=$?
    echo "== $task: $((SECONDS - start)) s, exit status $status" | tee -a "$OUT/commands.txt"
}

: > "$OUT/commands.txt"
bench speed --image "$SHARED/data/pose/strecha/fountain-P11/images/0000.jpg" --baselines "sift,rootsift,$OFFICIAL"
bench sequences --root "$SHARED/data/homography" --baselines "sift,rootsift,$OFFICIAL"
bench pose --root "$SHARED/data/pose" --scenes sacre_coeur --baselines "sift,rootsift,$OFFICIAL"
"$PYTHON" -m benchmarks make-hpatches-patches --root "$SHARED/data/homography" --out "$PATCHES" --max-patches 200 \
    | tee -a "$OUT/commands.txt"
bench hpatches-patches --root "$PATCHES" --pairs 200000 --queries 1000 --distractors 4000 --baselines "sift,rootsift,$OFFICIAL"
bench sfm --root "$SHARED/data/pose" --scenes strecha/Herz-Jesus-P8 --work "$OUT/sfm-work" --baselines "rootsift,$OFFICIAL"
for task in speed sequences pose hpatches-patches sfm; do
    if [ -f "$OUT/$task.md" ]; then cat "$OUT/$task.md"; fi
done > "$OUT/RESULTS.md"
