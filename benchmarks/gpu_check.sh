#!/usr/bin/env bash
# GPU check, for a machine with an NVIDIA GPU, CuPy, PyTorch and JAX (no package registry needed). In order:
#   1. versions and devices (nvidia-smi, CuPy, torch, JAX);
#   2. the GPU tests: tests/test_gpu.py (no host sync per step, float32 agreement with NumPy to 1e-5,
#      a file saved on the GPU loads on NumPy bit-identically, JAX on the GPU), then the whole suite,
#      where the `xp` fixture adds cupy, torch-cuda and (JAX's default device being the GPU) jax;
#   3. `flatnet-xp bench --gpu`: flatnet_xp on CuPy, torch-CUDA and JAX, native PyTorch CUDA, the
#      hand-written JAX peer, the cuBLAS GEMM peak, synchronised timing, peak memory, and the
#      width/batch sweep against the CPU (where the GPU overtakes it).
# Designed to finish within 8 minutes. Everything goes to ${OUT:-gpu_results}/.
# On the lent device machine: first `bash ../shared/tools/device-wheels.sh` here, pass carry=[".whl"];
# this script installs the wheels itself.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_results}"
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PWD"
fi
export PYTHONPATH="${PYTHONPATH:-$PWD}"
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/nvidia-smi.txt"
python3 - <<'PY' 2>&1 | tee "$out/versions.txt"
import importlib
for name in ("numpy", "cupy", "torch", "jax", "array_api_compat", "safetensors"):
    try:
        mod = importlib.import_module(name)
        print(name, getattr(mod, "__version__", "?"))
    except Exception as exc:  # report, don't stop
        print(name, "unavailable:", exc)
try:
    import torch
    print("torch cuda", torch.version.cuda, "available", torch.cuda.is_available(), "tf32", torch.backends.cuda.matmul.allow_tf32)
except Exception as exc:
    print("torch:", exc)
try:
    import cupy
    print("cupy runtime", cupy.cuda.runtime.runtimeGetVersion(), "driver", cupy.cuda.runtime.driverGetVersion())
except Exception as exc:
    print("cupy:", exc)
try:
    import jax
    print("jax devices", jax.devices())
except Exception as exc:
    print("jax:", exc)
PY
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py -rA 2>&1 | tail -30 | tee "$out/gpu_tests.txt" || status=1
timeout 240 python3 -m pytest -q -p no:cacheprovider tests -m "not mpi and not slow" -k "cupy or cuda or jax" -rf 2>&1 \
  | tail -80 | tee "$out/tests.txt" || status=1
timeout 200 python3 -m flatnet_xp bench --gpu --quick --repeats 5 --no-progress --out "$out/bench" 2>&1 \
  | tee "$out/bench.txt" || status=1
exit $status
