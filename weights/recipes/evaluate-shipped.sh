#!/bin/sh
# The benchmark figures of the shipped students' model cards: all three students, SIFT, RootSIFT and
# the official DesDis-8/16/32 in the same commands. Run from the repository root after training.
set -e
T=../shared/teachers/desdis-official
python weights/recipes/evaluate.py --out runs/eval/shipped --cards \
    --models weights/descplug-w8.pt weights/descplug-w16.pt weights/descplug-w32.pt \
    --baselines sift,rootsift,$T/DesDis-8.pth,$T/DesDis-16.pth,$T/DesDis-32.pth
