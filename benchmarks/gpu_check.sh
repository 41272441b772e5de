#!/usr/bin/env bash
# GPU check, for a machine with an NVIDIA GPU, CuPy and PyTorch (no package registry needed):
#   1. the whole test suite, so every `xp`-parametrized test also runs on cupy (and torch on CUDA);
#   2. the GPU benchmark: flatnet_xp on cupy and on torch-CUDA, native PyTorch CUDA, the cuBLAS GEMM
#      peak, synchronised timing, plus the width/batch sweep against the CPU (where the GPU overtakes).
# Designed to finish within 5 minutes. Results go to ${OUT:-gpu_results}/.
# On the lent device machine: first `bash ../shared/tools/device-wheels.sh` here, pass carry=[".whl"],
# and this script installs the wheels itself.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_results}"
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PWD"
fi
export PYTHONPATH="${PYTHONPATH:-$PWD}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/nvidia-smi.txt"
python3 - <<'PY' 2>&1 | tee "$out/versions.txt"
import cupy, numpy, torch
print("cupy", cupy.__version__, "numpy", numpy.__version__, "torch", torch.__version__,
      "cuda", torch.version.cuda, "tf32", torch.backends.cuda.matmul.allow_tf32)
PY
status=0
timeout 170 python3 -m pytest -q -p no:cacheprovider tests -m "not mpi" 2>&1 | tail -25 | tee "$out/tests.txt" || status=1
timeout 120 python3 -m flatnet_xp bench --gpu --quick --no-progress --out "$out" 2>&1 | tee "$out/bench.txt" || status=1
python3 - "$out" <<'PY'
import sys, flatnet_xp as fx
path = sys.argv[1] + "/model.safetensors"
fx.FlatMLP([5, 7, 3], ["relu", "identity"], dtype="float64", seed=0).save(path)
net = fx.FlatMLP.load(path, backend="cupy")
print("saved from numpy, loaded onto", net.backend, net.device)
PY
exit $status
