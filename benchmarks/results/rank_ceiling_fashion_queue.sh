#!/bin/bash
# The fashion ceiling study, one setting after the other (one process: the CPU is shared).
# Resumable: rerun this script and every setting trains only what its JSONL lacks.
# Usage: cd WORKTREE && OMP_NUM_THREADS=1 PYTHONPATH=. nohup bash benchmarks/results/rank_ceiling_fashion_queue.sh \
#            > benchmarks/results/rank_ceiling_fashion.log 2>&1 &
set -e
PY=${PY:-python}
R=benchmarks/results
$PY benchmarks/rank_ceiling.py --preset $R/rank_ceiling_fashion_A.toml --archs 8 \
    --set data.val_size=5000 --set search.eval_images=5000 \
    --label "fashion 16px, 8k train images, 10 retrain epochs, 5k eval images"
$PY benchmarks/rank_ceiling.py --preset $R/rank_ceiling_fashion_B.toml --archs 8 \
    --set data.val_size=5000 --set search.eval_images=5000 \
    --label "fashion preset: 16px, 16k train images, 10 retrain epochs, 5k eval images"
