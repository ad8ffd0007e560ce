#!/usr/bin/env bash
# One-shot GPU check (run once on a machine with one NVIDIA GPU, from the repository root, with
# the wheels of .whl/ carried along). Each step is bounded by `timeout`; a failed step does not stop
# the next. Logs and JSON go to $OUT (10 files at most); a summary table ends the output.
#   bash scripts/gpu_check/run.sh
# Local dry run on a CPU (no wheel install; small sizes, gloo, hardware=cpu):
#   GPU_CHECK_LOCAL=1 OUT=/tmp/out PY=.venv/bin/python bash scripts/gpu_check/run.sh
# Only some steps (the machine's checks always run):
#   GPU_CHECK_STEPS="precision_ab" bash scripts/gpu_check/run.sh
set -o pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:?set OUT to the output folder}
mkdir -p "$OUT"
PY=${PY:-python3}
LOCAL=${GPU_CHECK_LOCAL:-0}
STEPS=$(mktemp)
START=$SECONDS
BUDGET=${GPU_CHECK_BUDGET_S:-460}   # the whole script, summary included; each step's timeout is cut to fit
WANTED=" ${GPU_CHECK_STEPS:-gpu_throughput smoke_on_cuda nccl_world1 precision_ab} "
wanted() { [[ "$WANTED" == *" $1 "* ]]; }

step() {  # step NAME LOGFILE TIMEOUT_S command...
  local name=$1 log=$2 limit=$3; shift 3
  local began=$SECONDS left=$((BUDGET - 20 - (SECONDS - START)))
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -lt 10 ]; then
    echo "===== $name: skipped, the ${BUDGET}s budget is spent =====" | tee -a "$OUT/$log"
    printf '%s\t%s\t%s\n' "$name" skip 0 >> "$STEPS"; return
  fi
  echo "===== $name (timeout ${limit}s) $(date -u +%H:%M:%S) =====" | tee -a "$OUT/$log"
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$OUT/$log"
  local rc=$?
  echo "===== $name: rc=$rc in $((SECONDS - began))s =====" | tee -a "$OUT/$log"
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - began))" >> "$STEPS"
}

# ---- 0. wheels not on the device's interpreter (hydra-core, omegaconf, antlr4, pycocotools, faster-coco-eval)
if [ "$LOCAL" = 1 ]; then
  export PYTHONPATH=$PWD
else
  step wheels 01_env.log 60 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  if [ "$(tail -1 "$STEPS" | cut -f2)" != 0 ]; then   # no pip there: a wheel is a zip (these five need no install step)
    step wheels-unzip 01_env.log 60 "$PY" -c "import glob, zipfile; [zipfile.ZipFile(w).extractall('/tmp/site') for w in sorted(glob.glob('.whl/*.whl'))]"
  fi
  [ "$(tail -1 "$STEPS" | cut -f2)" = 0 ] && export PYTHONPATH=/tmp/site:$PWD || { echo "wheel install failed"; exit 1; }
fi

# ---- 1. the machine
step nvidia-smi 01_env.log 20 nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,utilization.gpu \
  --format=csv,noheader
step torch 01_env.log 45 "$PY" -c "
import sys, torch, torchvision, numpy
print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda,
      'torchvision', torchvision.__version__, 'numpy', numpy.__version__)
print('cuda available', torch.cuda.is_available(), 'devices', torch.cuda.device_count(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-',
      'cudnn', torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
import hydra, omegaconf, antlr4, pycocotools, faster_coco_eval, torchmetrics
print('hydra', hydra.__version__, 'omegaconf', omegaconf.__version__, 'faster_coco_eval', faster_coco_eval.__version__,
      'torchmetrics', torchmetrics.__version__, 'from', hydra.__file__)
"

# ---- 2. throughput benchmark (benchmarks/gpu_throughput.py, data sets pre-generated in parallel)
if ! wanted gpu_throughput; then :
elif [ "$LOCAL" = 1 ]; then
  step gpu_throughput 02_gpu_throughput.log 300 "$PY" scripts/gpu_check/gpu_throughput_cached.py --dry-run \
    --models "${GPU_CHECK_MODELS:-yolov4,pix2pix}" --out "$OUT/gpu.json"
else
  step gpu_throughput 02_gpu_throughput.log 220 "$PY" scripts/gpu_check/gpu_throughput_cached.py \
    --steps 20 --time-limit 120 --out "$OUT/gpu.json"
fi

# ---- 3. the product's job path on CUDA (run_job, no Ray), every torch smoke job, hardware=h100x1
if ! wanted smoke_on_cuda; then :
elif [ "$LOCAL" = 1 ]; then
  step smoke_on_cuda 03_smoke_on_cuda.log 300 "$PY" scripts/gpu_check/smoke_on_cuda.py --hardware cpu \
    --models "${GPU_CHECK_MODELS:-yolov4,pix2pix}" --out "$OUT/smoke_on_cuda.json"
else
  step smoke_on_cuda 03_smoke_on_cuda.log 120 "$PY" scripts/gpu_check/smoke_on_cuda.py --out "$OUT/smoke_on_cuda.json"
fi

# ---- 4. NCCL process group of one rank + run_job(rank=0, world_size=1), and the DDP path forced on
if ! wanted nccl_world1; then :
elif [ "$LOCAL" = 1 ]; then
  step nccl_world1 04_nccl_world1.log 200 "$PY" scripts/gpu_check/nccl_world1.py --backend gloo --hardware cpu \
    --out "$OUT/nccl_world1.json"
else
  step nccl_world1 04_nccl_world1.log 75 "$PY" scripts/gpu_check/nccl_world1.py --out "$OUT/nccl_world1.json"
fi

# ---- 5. each eval tier in fp32 and in amp on the same images: metric, images/s, box agreement
if ! wanted precision_ab; then :
elif [ "$LOCAL" = 1 ]; then
  step precision_ab 05_precision_ab.log 300 "$PY" scripts/gpu_check/precision_ab.py --dry-run \
    --out "$OUT/precision_ab.json"
else
  step precision_ab 05_precision_ab.log 300 "$PY" scripts/gpu_check/precision_ab.py \
    --images "${GPU_CHECK_IMAGES:-300}" --out "$OUT/precision_ab.json"
fi

printf 'total\t-\t%s\n' "$((SECONDS - START))" >> "$STEPS"
timeout 15 "$PY" scripts/gpu_check/summarize.py "$OUT" "$STEPS" 2>&1 | tee "$OUT/summary.txt"
rm -f "$STEPS"
