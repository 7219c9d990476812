#!/usr/bin/env bash
# The GPU checks in one run (under 8 minutes, first-use compiles included), for a machine with an
# NVIDIA GPU and a python3 that has torch (the device machines lent to this project have one and
# cannot reach the package index).
#
# Once, on a machine with the index (gsplat 1.5.3 is a pure-Python wheel; its CUDA kernels
# are compiled on first use with the machine's nvcc, where there is one):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps -d .whl gsplat==1.5.3
# Then, on the GPU machine, from the repository root (with .whl carried along):
#   bash bench/gpu_check.sh 2>&1 | tee gpu_check.log
#
# It prints the GPU, torch and `emotalk3d gpu-check --json` (which rasterisers run and why not),
# runs the parity tests of every GPU rasteriser against the CPU rasteriser and the float64
# reference (tests/backend/raster/test_triton.py compiled for the GPU, test_backends.py for
# gsplat), bench/bench_gpu_raster.py (fps at 512x512 and 1920x1080 for the demo head and a
# 110k-Gaussian head, forward+backward, triton/gsplat ratio), bench/bench_train_step.py (one
# appearance and one S2GNet training step on CUDA against the CPU) and, where bpy is installed,
# the engine/bare ratio on CUDA (bench/bench_engine.py --device cuda).
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
echo "== gpu-check"
timeout 300 $PY -m emotalk3d_addon.backend.tools.cli gpu-check --json || status=1
echo "== parity: Triton kernels (first use compiles them: seconds) and gsplat (first use compiles: minutes, if nvcc)"
timeout 300 $PY -m pytest -q --noconftest -p no:cacheprovider tests/backend/raster/test_triton.py -rs || status=1
timeout 420 $PY -m pytest -q --noconftest -p no:cacheprovider tests/backend/raster/test_backends.py -rs || status=1
echo "== bench_gpu_raster (demo head and 110k head, 512x512 and 1920x1080)"
timeout 300 $PY bench/bench_gpu_raster.py --frames 100 || status=1
echo "== bench_train_step (CUDA against CPU)"
timeout 300 $PY bench/bench_train_step.py || status=1
if $PY -c "import bpy" 2>/dev/null; then
  echo "== bench_engine on CUDA"
  timeout 300 $PY bench/bench_engine.py --device cuda --sizes 512x512,1920x1080 --frames 6 || status=1
else
  echo "== bench_engine: bpy is not installed here; run it where Blender's wheel is"
fi
echo "== done (status $status)"
exit $status
