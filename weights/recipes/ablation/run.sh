#!/bin/sh
# The ablation of weights/README.md: five width-8 students, same data and steps, then one benchmark
# command over all of them. Run from the repository root; about 6 CPU minutes per run on 2 cores.
set -e
for row in triplet desdis mtd-whiten mtd-raw combined; do
    descplug train --config weights/recipes/ablation/$row.yaml
done
