#!/bin/bash
# The GPU figures in one table, in about 6 minutes on one GPU (sized for an H200 with 16 CPUs; every step has a
# time limit, so the whole stays under 8 minutes, the install of a missing .venv not counted):
#   1. the compute paths of trainables/device.py through a real trial: fp32, bf16, bf16 + channels-last,
#      fp16 + channels-last with loss scaling (bench/cuda_paths.py)
#   2. a packed trial (gpu_fraction 0.25) held to its memory share (bench/cuda_paths.py --share)
#   3. a trial's training throughput against a bare PyTorch loop (bench/trial_overhead.py)
#   4. trials packed 1, 2 and 4 per GPU against aggregate throughput (bench/trial_packing.py)
#   5. `segtune predict` on cuda and on the CPU, with the bundle of a smoke search and ensemble made here
# Synthetic data only; nothing is downloaded except what `pip install -e '.[dev]'` needs when .venv is missing.
#
#   bench/gpu_check.sh [OUT_DIR]                  (default /tmp/segtune_gpu_check; emptied first)
#   bench/gpu_check.sh --cpu-dry-run [OUT_DIR]    every step at toy sizes on the CPU: checks the script itself
# Exits 2 without a CUDA device (unless --cpu-dry-run), 3 if the install fails, 1 if a step failed.
set -uo pipefail
dry=0
if [ "${1:-}" = "--cpu-dry-run" ]; then dry=1; shift; fi
out=$(realpath -m "${1:-/tmp/segtune_gpu_check}")
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [ $dry = 0 ] && ! { command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q GPU; }; then
    echo "gpu_check: no CUDA device here (nvidia-smi lists no GPU); run it on a GPU machine, or pass --cpu-dry-run" >&2
    exit 2
fi
if [ ! -x .venv/bin/python ]; then
    echo "gpu_check: no .venv; installing segtune into a new one (python3 -m venv .venv && pip install -e '.[dev]')"
    if ! { python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]'; }; then
        echo "gpu_check: the install failed (see above): this machine needs the package index or a wheel store" >&2
        exit 3
    fi
fi
py=.venv/bin/python
export NO_ALBUMENTATIONS_UPDATE=1 MLFLOW_DISABLE_TELEMETRY=true RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled
if [ $dry = 0 ] && ! $py -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: nvidia-smi sees a GPU but torch.cuda.is_available() is False (a CPU-only torch, or a driver" \
         "older than torch's CUDA); nothing was measured" >&2
    exit 2
fi
rm -rf "$out"; mkdir -p "$out"
table="$out/table.tsv"; failed=0

if [ $dry = 0 ]; then  # GPU sizes: tu-resnet18 Unet at depth 5, 256x256 crops, batch 16
    work=(--crop 256 256 --batch-size 16 --encoders tu-resnet18 --depth 5 --steps 16 --epochs 3 --threads 4
          --synthetic-images 400 --device cuda)
    packing=(--packing 1,2,4 --precision mixed --steps 30 --epochs 3 --cpus-per-trial 3)
    search_flags="--gpus-per-trial 0.5 --cpus-per-trial 2"; image_count=16; image_side=256; device=cuda; scale=1
else                   # toy sizes on the CPU
    work=(--crop 64 64 --batch-size 4 --depth 3 --steps 2 --epochs 2 --synthetic-images 32 --device cpu)
    packing=(--cpu --packing 1,2 --crop 64 --batch-size 4 --steps 2 --epochs 2 --cpus-per-trial 1)
    search_flags=""; image_count=2; image_side=128; device=cpu; scale=6  # limits below x scale: a shared CPU is slow
fi

step() {  # step NAME LIMIT_S COMMAND...: run it into $out/NAME.log under a time limit; a failure is a table row
    local name=$1 limit=$(( $2 * scale )); shift 2
    echo "gpu_check: $name (at most ${limit} s)"
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    local status=$?
    if [ $status != 0 ]; then
        failed=1
        local why="exit $status"; [ $status = 124 ] && why="timed out after ${limit} s"
        printf 'ROW\t%s\tFAILED\t%s (see %s)\n' "$name" "$why" "$out/$name.log" >> "$table"
        return 1
    fi
}

step compute_paths 75 $py bench/cuda_paths.py "${work[@]}" --out "$out/paths" && grep '^ROW' "$out/compute_paths.log" >> "$table"
step memory_share 40 $py bench/cuda_paths.py "${work[@]}" --share 0.25 --out "$out/share" && grep '^ROW' "$out/memory_share.log" >> "$table"

if step trial_vs_bare 70 $py bench/trial_overhead.py "${work[@]}" --no-ray --repeats 3 --out "$out/overhead"; then
    awk '/^  bare /{bare=$2} /segtune\/bare ratio \(wall clock\)/{r=$5" "$6" "$7}
         END{printf "ROW\ttrial vs bare loop\tsegtune/bare, median [min, max] of 3\t%s (bare %s img/s)\n", r, bare}' \
        "$out/trial_vs_bare.log" >> "$table"
fi

if step packing 140 $py bench/trial_packing.py "${packing[@]}" --storage "$out/packing"; then
    awk '$1 ~ /^[0-9]+$/ && NF == 5 {printf "ROW\ttrials per device\t%s (%s)\t%s img/s in all, %s one per device; slowest trial %s s\n", $1, $2, $4, $5, $3}' \
        "$out/packing.log" >> "$table"
fi

predict() {  # a smoke search and its ensemble, then `segtune predict` on made-up images, per runtime and device
    $py search/run.py --smoke-test --name gpu_check --storage-path "$out/search" \
        --tracking-uri "sqlite:///$out/mlflow.db" $search_flags || return 1
    $py -m segtune.cli ensemble "$out/search/gpu_check" --top-k 2 --folds 2 --bootstrap 100 --candidates mean \
        --no-register || return 1
    $py - "$out/images" "$image_count" "$image_side" <<'PY' || return 1
import sys
from pathlib import Path
import numpy as np
from PIL import Image
folder, count, side = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
folder.mkdir(parents=True)
for i in range(count):
    pixels = np.random.default_rng(i).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / f"photo_{i}.png")
PY
    for run in "torchscript $device" "torchscript cpu" "onnx $device"; do
        set -- $run
        $py -m segtune.cli predict "$out/search/gpu_check/segtune/ensemble/bundle" "$out/images" \
            "$out/predicted_$1_$2" --runtime "$1" --device "$2" --batch-size 16 > "$out/predict_$1_$2.log" 2>&1 || return 1
        grep -h "sees no GPU" "$out/predict_$1_$2.log"
        echo "PREDICT $1 $2: $(tail -1 "$out/predict_$1_$2.log")"
    done
}
export -f predict; export out py device search_flags image_count image_side
if step predict 150 bash -c predict; then
    sed -n 's/^PREDICT \([a-z]*\) \([a-z]*\): written \([0-9]*\).*(\([0-9.]*\) images\/s).*/ROW\tsegtune predict\t\1 on \2\t\4 images\/s (\3 images)/p' \
        "$out/predict.log" >> "$table"
    grep -q "sees no GPU; running on the CPU" "$out/predict.log" &&
        printf 'ROW\tsegtune predict\tnote\tonnx fell back to the CPU: onnxruntime here has no CUDA provider\n' >> "$table"
fi

echo
echo "segtune GPU check, $(date -u +%Y-%m-%dT%H:%MZ), $($py -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (dry run)")')"
awk -F'\t' '{printf "%-20s %-40s %s\n", $2, $3, $4}' "$table"
echo "logs: $out"
exit $failed
