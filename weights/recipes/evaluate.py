"""Benchmark trained students against SIFT, RootSIFT and official checkpoints in the same commands,
and record the figures in their model cards.

    python weights/recipes/evaluate.py --out runs/eval/w8 --models weights/descplug-w8.pt \
        --baselines sift,rootsift,../shared/teachers/desdis-official/DesDis-8.pth [--cards] [--quick]

Runs ``python -m benchmarks`` on Oxford, HPatches-v and EVD (MMA@3, 2000 SIFT keypoints, mutual
NN) and on Strecha (pairs >= 3 frames apart) and Sacre Coeur (relative-pose AUC@10, 4000 SIFT
keypoints, mutual NN + ratio 0.9; the mean over RANSAC_ORDERS runs of OpenCV's RANSAC per pair, each
on another ordering of the matches, since one run's AUC@10 spreads by about 3 points on Sacre Coeur
with the order of the matches alone). ``--quick`` keeps Oxford, HPatches-v and Strecha only (the
ablation). With ``--cards`` each model's ``<name>.json``/``.md`` gets a ``benchmarks`` section
holding every method's figures and the exact commands (the section's written notes are kept).
Prints a markdown table of the figures. Run from the repository root.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from descplug.train.card import read_card, write_card  # noqa: E402

SHARED = "../shared/data"
RANSAC_ORDERS = 10
TASKS = {  # name: (benchmark arguments, metric extractor)
    "Oxford MMA@3": (["sequences", "--root", f"{SHARED}/homography/oxford", "--max-keypoints", "2000"],
                     lambda r: r["all"]["mma"][2]),
    "HPatches-v MMA@3": (["sequences", "--root", f"{SHARED}/homography/hpatches-v", "--max-keypoints", "2000"],
                         lambda r: r["all"]["mma"][2]),
    "EVD MMA@3": (["sequences", "--root", f"{SHARED}/homography/evd", "--max-keypoints", "2000"],
                  lambda r: r["all"]["mma"][2]),
    "Strecha AUC@10": (["pose", "--root", f"{SHARED}/pose/strecha", "--min-gap", "3", "--max-keypoints", "4000",
                        "--ratio", "0.9", "--ransac-orders", str(RANSAC_ORDERS)], lambda r: r["all"]["auc"]["10"]),
    "Sacre Coeur AUC@10": (["pose", "--root", f"{SHARED}/pose/sacre_coeur", "--max-keypoints", "4000",
                            "--ratio", "0.9", "--ransac-orders", str(RANSAC_ORDERS)], lambda r: r["all"]["auc"]["10"]),
}
SAME_COMMANDS = "Every row measured in the same commands, on the same keypoints (SIFT detector)."
QUICK = ("Oxford MMA@3", "HPatches-v MMA@3", "Strecha AUC@10")


def run(models: list[str], baselines: str, out: Path, tasks) -> tuple[dict, dict]:
    """figures {method: {task: value}} and commands {task: command line}."""
    figures, commands = {}, {}
    for task in tasks:
        args, metric = TASKS[task]
        path = out / (task.split()[0].lower() + ".json")
        cmd = [sys.executable, "-m", "benchmarks", *args, "--baselines", baselines, "--threads", "1",
               "--no-progress", "--json", str(path)]
        for model in models:
            cmd += ["--model", model]
        print("+", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True)
        commands[task] = "python " + " ".join(cmd[1:])
        for method, result in json.loads(path.read_text())["results"].items():
            figures.setdefault(method, {})[task] = round(float(metric(result)), 4)
    return figures, commands


def table(figures: dict, tasks) -> str:
    lines = ["| method | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for method, values in figures.items():
        lines.append(f"| {method} | " + " | ".join(f"{values.get(t, float('nan')):.3f}" for t in tasks) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True, help="checkpoints to evaluate")
    parser.add_argument("--baselines", default="sift,rootsift", help="baselines and reference checkpoints")
    parser.add_argument("--out", required=True, help="folder of the benchmark JSON files")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--cards", action="store_true", help="record the figures in the models' cards")
    args = parser.parse_args(argv)
    tasks = QUICK if args.quick else tuple(TASKS)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figures, commands = run(args.models, args.baselines, out, tasks)
    (out / "figures.json").write_text(json.dumps({"figures": figures, "commands": commands}, indent=1) + "\n")
    print(table(figures, tasks))
    if args.cards:
        for model in args.models:
            card = read_card(model)
            card["benchmarks"] = {
                "command": "python weights/recipes/evaluate.py " + " ".join(argv or sys.argv[1:]),
                "commands": commands, "results": figures,
                # a card's written commentary on its figures is kept (revise it when they change)
                "notes": card.get("benchmarks", {}).get("notes") or SAME_COMMANDS,
            }
            write_card(model, card)
    return 0


if __name__ == "__main__":
    sys.exit(main())
