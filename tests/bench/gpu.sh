#!/usr/bin/env bash
# The GPU checks of issue 15, one prepared script for a machine with a CUDA GPU (CI has none).
#
#   bash tests/bench/gpu.sh            # from the repository root; about 3-6 minutes, at most 8
#
# 1. The Python to use: $PYTHON, else .venv/bin/python, else `make install EXTRA=gpu` (which
#    needs the package index). A torch that sees no CUDA GPU (the CPU build these machines
#    install, or no GPU) is said in one line and the script exits 0: there is nothing to check.
# 2. tests/bench/gpu_checks.py: the device paths (model, methods, metrics, precision, OOM
#    halving) on the GPU against the CPU.
# 3. tests/bench/scale_bench.py --device cuda --batch-size 64: images/s of the bare
#    forward+backward, `audit run --method gradient` and all metrics, for ResNet-18 and
#    DenseNet-121 at 224 px (ONNX and torch.export), with worker processes feeding the GPU
#    (goal >= 0.9x bare), the same run on --cpu-images images on the CPU and the GPU's speed-up.
# Each step has its own time limit; the results are written to bench-out/gpu/.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-bench-out}/gpu
mkdir -p "$OUT"

PY=${PYTHON:-.venv/bin/python}
if [ ! -x "$PY" ] && ! command -v "$PY" >/dev/null 2>&1; then
    echo "gpu.sh: no $PY; running make install EXTRA=gpu"
    timeout 240 make install EXTRA=gpu || { echo "gpu.sh: make install EXTRA=gpu failed; set PYTHON to a Python with audit installed"; exit 1; }
fi

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    "$PY" -c "import torch; print(f'gpu.sh: torch {torch.__version__} (CUDA build: {torch.version.cuda}) sees no CUDA GPU; nothing to check here. '
                                 'On a GPU machine install a CUDA build of torch (pip install torch==' + torch.__version__.split('+')[0] + ')')"
    exit 0
fi
"$PY" - <<'PY'
import torch
print(f"gpu.sh: torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}, "
      f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
try:
    import onnxruntime
    print(f"gpu.sh: onnxruntime {onnxruntime.__version__}, providers {onnxruntime.get_available_providers()}")
except ImportError:
    print("gpu.sh: onnxruntime not installed")
PY

status=0
if [ -f tests/bench/gpu_checks.py ]; then
    echo "== gpu_checks.py"
    timeout 150 "$PY" tests/bench/gpu_checks.py 2>&1 | tee "$OUT/gpu_checks.log" || status=1
else
    echo "== gpu_checks.py: not in this tree, skipped"
fi

echo "== scale_bench.py --device cuda --batch-size 64"
timeout 330 "$PY" tests/bench/scale_bench.py --device cuda --batch-size 64 --images 256 --repeats 2 \
    --parts throughput,workers --cpu-images 64 --cache "$OUT/scale" > "$OUT/scale.json" 2> "$OUT/scale.log" || status=1
tail -n 20 "$OUT/scale.log"
"$PY" - "$OUT/scale.json" <<'PY' || status=1
import json, sys
report = json.load(open(sys.argv[1]))
print(f"{'model':<18}{'bare img/s':>12}{'gradient':>10}{'ratio':>7}{'all metrics':>13}{'CPU img/s':>11}{'GPU/CPU':>9}")
for key, row in report.items():
    if isinstance(row, dict) and "bare_images_per_s" in row:
        print(f"{key:<18}{row['bare_images_per_s']:>12}{row['gradient_images_per_s']:>10}{row['gradient_ratio']:>7}"
              f"{row['all_metrics_images_per_s']:>13}{row.get('cpu_all_metrics_images_per_s', '-'):>11}{row.get('speed_up_over_cpu', '-'):>9}")
if "workers" in report:
    print("workers:", json.dumps(report["workers"]))
PY
exit $status
