#!/usr/bin/env bash
# The GPU checks in one run, for a machine with an NVIDIA GPU and a python3 that has torch
# (the device machines lent to this project have one and cannot reach the package index).
#
# Once, on a machine with the index (gsplat 1.5.3 is a pure-Python wheel; its CUDA kernels
# are compiled on first use with the machine's nvcc):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps -d .whl gsplat==1.5.3
# Then, on the GPU machine, from the repository root (with .whl carried along):
#   bash bench/gpu_check.sh 2>&1 | tee gpu_check.log
#
# It prints the GPU and torch, runs the gsplat parity tests against the float64 reference
# (tests/backend/raster/test_backends.py) and bench/bench_raster.py (CPU and gsplat at 512²,
# 110,500 Gaussians, SH degree 3). The engine bench (bench/bench_engine.py --device cuda)
# needs bpy, which is not on those machines; run it where Blender's wheel is installed.
set -uo pipefail
PY=${PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-/tmp/emotalk3d-site}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" > /dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    || { echo "gpu_check: could not install the carried wheels" >&2; exit 1; }
  export PYTHONPATH="$SITE:$PYTHONPATH"
fi
export MAX_JOBS=${MAX_JOBS:-8} PYTHONUNBUFFERED=1
echo "== $(date -u +%FT%TZ)  $(uname -m)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -2
$PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, \
'device', torch.cuda.get_device_name() if torch.cuda.is_available() else None)"
$PY -c "import gsplat; print('gsplat', gsplat.__version__)" || echo "gsplat missing: carry its wheel (see the top of this script)"
status=0
echo "== gsplat parity (first use compiles the CUDA kernels: minutes)"
$PY -m pytest -q --noconftest -p no:cacheprovider tests/backend/raster/test_backends.py -rs || status=1
echo "== bench_raster (CPU, then gsplat)"
$PY bench/bench_raster.py --repeats 3 || status=1
echo "== done (status $status)"
exit $status
