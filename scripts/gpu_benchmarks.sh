#!/usr/bin/env bash
# Every model's benchmark on a GPU, in float32 and bfloat16, and a check that the contenders agree there.
#
#   bash scripts/gpu_benchmarks.sh            # from the repository root; about 6-8 minutes on one H200
#
# Environment:
#   DEVICE  where to run (default cuda); DEVICE=cpu runs the same steps on the CPU
#   QUICK=1 tiny models and one round each: shows that every step runs (about 5 minutes on 2 CPU cores)
#   MODELS  which models (default "vit swin clip vae longformer")
#   OUT     results folder (default docs/benchmarks/gpu): MODEL.DTYPE.json (the format of docs/benchmarks/*.json,
#           with "device" and "dtype"), agreement.json, gpu_benchmarks.log. Where OUT is set (a lent machine
#           that returns at most 8 files), the MODEL.DTYPE.json files come packed in OUT/benchmarks.tar instead
#   PYTHON  the interpreter to use (default: .venv/bin/python, made with `pip install -e '.[test]'` if it lacks
#           the packages); one given without hubformers gets it installed editable, offline (no dependencies)
#
# Steps: the machine (nvidia-smi, torch's CUDA build), the agreement check (each architecture's tiny model, ours
# vs the references on the same weights, float32 on DEVICE, max |output - ours| <= 1e-4, under eager and sdpa
# attention, flex_attention on CUDA, flash_attention_2 where flash-attn is installed), then the benchmarks.
# A failing step is reported and the others still run; the exit status is 1 if any failed.
set -uo pipefail

DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
read -ra MODELS <<<"${MODELS:-vit swin clip vae longformer}"
RESULTS=${OUT:-docs/benchmarks/gpu}
JSON_DIR=$RESULTS
[ -n "${OUT:-}" ] && JSON_DIR=$(mktemp -d)
mkdir -p "$RESULTS"
LOG="$RESULTS/gpu_benchmarks.log"
: >"$LOG"
failures=()

say() { echo "== $*" | tee -a "$LOG"; }
logged() { "$@" 2>&1 | tee -a "$LOG"; }

if [ -z "${PYTHON:-}" ]; then
    PYTHON=.venv/bin/python
    if ! "$PYTHON" -c "import hubformers, timm, open_clip, diffusers" 2>/dev/null; then
        say "installing the test environment into .venv"
        [ -x "$PYTHON" ] || python3 -m venv .venv
        logged .venv/bin/pip install -q -e '.[test]' || failures+=("install")
    fi
elif ! "$PYTHON" -c "import hubformers.scripts.benchmark" 2>/dev/null; then
    say "installing hubformers into $PYTHON"
    logged "$PYTHON" -m pip install -q --no-deps --no-build-isolation -e . || failures+=("install")
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

say "machine"
logged nvidia-smi || echo "(no nvidia-smi)" | tee -a "$LOG"
logged "$PYTHON" -c "
import torch
print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'cuDNN', torch.backends.cudnn.version())
print('CUDA available:', torch.cuda.is_available(), 'devices:', torch.cuda.device_count())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(p.name, f'{p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, compute {p.major}.{p.minor}')
"

say "agreement of the contenders on tiny models, float32 on $DEVICE"
logged "$PYTHON" -m hubformers.scripts.benchmark agreement --device "$DEVICE" --models "${MODELS[@]}" --json "$RESULTS/agreement.json" ||
    failures+=("agreement")

# rounds: on an H200 a full-size forward takes milliseconds, the model building before it most of each run
if [ "$QUICK" = 1 ]; then
    ROUNDS=(--repeats 1 --warmup 0)
else
    ROUNDS=(--repeats 10 --warmup 3 --peak-size 8192)
fi
json_files=()  # names under JSON_DIR
for model in "${MODELS[@]}"; do
    size=()
    [ "$QUICK" = 1 ] && mapfile -t size < <("$PYTHON" -m hubformers.scripts.benchmark tiny "$model")
    for dtype in float32 bfloat16; do
        json="$model.$dtype.json"
        say "benchmark $model, $dtype on $DEVICE"
        if logged "$PYTHON" -m hubformers.cli benchmark "$model" "${size[@]}" "${ROUNDS[@]}" \
            --device "$DEVICE" --dtype "$dtype" --json "$JSON_DIR/$json"; then
            json_files+=("$json")
        else
            failures+=("benchmark $model $dtype")
        fi
    done
done

if [ -n "${OUT:-}" ] && [ ${#json_files[@]} -gt 0 ]; then
    tar -C "$JSON_DIR" -cf "$OUT/benchmarks.tar" "${json_files[@]}"
    rm -r "$JSON_DIR"
fi
if [ ${#failures[@]} -gt 0 ]; then
    say "FAILED: ${failures[*]}"
    exit 1
fi
say "all steps passed; results in $RESULTS"
