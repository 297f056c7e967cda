#!/usr/bin/env bash
# Every GPU check in one script, for a machine with a CUDA GPU and this repo's .venv:
#   1. training/inference throughput of hrnet_w64 and resnet34, bf16 + channels_last vs fp32;
#   2. one real-size 20-epoch hrnet_w64 fold (the reference's 3a/302 config, random init) on
#      the `full` synthetic profile, generated here (809 train / 312 val / 463 test samples);
#   3. one resnet34 fold of 3a/302 twice, fp32 (the original's precision) and bf16 autocast
#      (same seed, same epochs): OOF losses and times, to judge the bf16 default;
#   4. sweeps through Dask with --runs-per-gpu 1, 2, 4 (resnet34, hrnet_w64; 4 folds x 2
#      epochs each): folds per hour and peak GPU memory.
# Results go to $OUT (default gpu_results/): bench_*.json, the run folder, and summary.txt.
#
#   OUT=gpu_results bash scripts/gpu_check.sh
#   PROFILE=tiny EPOCHS=1 BACKBONES=resnet18 FOLD_BACKBONE=resnet18 PRECISION_BACKBONE=resnet18 \
#     SWEEP_BACKBONES=resnet18 SWEEP_EPOCHS=1 bash scripts/gpu_check.sh  # CPU smoke
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-gpu_results}
PROFILE=${PROFILE:-full}
EPOCHS=${EPOCHS:-20}
BACKBONES=${BACKBONES:-"hrnet_w64 resnet34"}
FOLD_BACKBONE=${FOLD_BACKBONE:-hrnet_w64}
PRECISION_BACKBONE=${PRECISION_BACKBONE:-resnet34}
SAMPLES=${SAMPLES:-256}
mkdir -p "$OUT"
summary="$OUT/summary.txt"
: > "$summary"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')" | tee -a "$summary"

for backbone in $BACKBONES; do
  for flags in "" "--no-amp --no-channels-last"; do
    tag="$backbone$(echo "$flags" | tr -d ' -' | sed 's/^./_&/')"
    $PY scripts/bench_training.py --backbone "$backbone" --samples "$SAMPLES" $flags \
      | tee "$OUT/bench_$tag.json" | tee -a "$summary"
  done
done

data="data/synthetic_$PROFILE"
[ -f "$data/metadata.csv" ] || $PY -m lib.synthetic "$data" --profile "$PROFILE" --seed 0 --workers "$(nproc)"
start=$(date +%s)
$PY -m papermill notebooks/02_preprocess.ipynb "$OUT/02_preprocess.ipynb" --kernel python3 \
  -p data_dir "$PWD/$data" -p check_md5 False --log-level WARNING
echo "preprocess (image cache) seconds: $(( $(date +%s) - start ))" | tee -a "$summary"
# train_fold BACKBONE AMP TAG: fold 0 of 3a/302 (seed 3) into $OUT/runs/TAG/..., summary lines
train_fold() {
  local run_dir="$OUT/runs/$3/$1/fold0_seed3" start
  rm -rf "$run_dir" && mkdir -p "$run_dir" && run_dir=$(cd "$run_dir" && pwd)
  start=$(date +%s)
  $PY -m papermill notebooks/03_train.ipynb "$run_dir/03_train.ipynb" --kernel python3 \
    -f params/3a_302_cls3_normM.yaml -p backbone "$1" -p pretrained False -p amp "$2" \
    -p epochs "$EPOCHS" -p fold 0 -p seed 3 -p run_dir "$run_dir" -p data_dir "$PWD/$data" \
    --log-level WARNING
  echo "$3 $1: fold wall seconds (papermill, incl. kernel start): $(( $(date +%s) - start ))" | tee -a "$summary"
  $PY - "$run_dir" "$3 $1" <<'EOF' | tee -a "$summary"
import json, sys
m = json.load(open(f"{sys.argv[1]}/metrics.json"))
h = m["history"]
print(f"{sys.argv[2]} ({m['precision']}): fit {m['fit_seconds']:.0f} s for {len(h)} epochs, "
      f"train {sum(e['train_seconds'] for e in h):.0f} s, eval {sum(e['eval_seconds'] for e in h):.0f} s; "
      f"best epoch {m['best_epoch']}, OOF loss {m['best_oof_loss']:.4f}; samples {m['samples']}")
EOF
}

train_fold "$FOLD_BACKBONE" True fold
train_fold "$PRECISION_BACKBONE" False precision_fp32
train_fold "$PRECISION_BACKBONE" True precision_bf16

# 4. Sweep throughput through Dask: --runs-per-gpu 1, 2 and 4 for resnet34 and hrnet_w64
#    (3a/302, random init, SWEEP_EPOCHS epochs, 4 folds): folds per hour and peak GPU memory.
SWEEP_EPOCHS=${SWEEP_EPOCHS:-2}
SWEEP_BACKBONES=${SWEEP_BACKBONES:-"resnet34 hrnet_w64"}
for backbone in $SWEEP_BACKBONES; do
  for k in 1 2 4; do
    plan="$OUT/sweep_${backbone}_k$k.yaml"
    printf 'name: gpu_sweep\nfolds: [0, 1, 2, 3]\nruns:\n  - {params: %s, backbone: %s, seed: 0}\n' \
      "$PWD/params/3a_302_cls3_normM.yaml" "$backbone" > "$plan"
    rm -rf "$OUT/sweeps/${backbone}_k$k"
    memlog="$OUT/sweep_${backbone}_k$k.mem"
    if command -v nvidia-smi >/dev/null; then
      nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$memlog" &
      smi=$!
    fi
    start=$(date +%s)
    $PY -m lib.sweep "$plan" --runs-per-gpu "$k" --runs-dir "$OUT/sweeps/${backbone}_k$k" \
      --data-dir "$PWD/$data" -p pretrained False -p epochs "$SWEEP_EPOCHS" --no-progress \
      > "$OUT/sweep_${backbone}_k$k.txt" 2>&1 || true
    seconds=$(( $(date +%s) - start ))
    [ -n "${smi:-}" ] && kill "$smi" 2>/dev/null
    peak=$(sort -n "$memlog" 2>/dev/null | tail -1)
    echo "sweep $backbone runs-per-gpu $k: 4 folds x $SWEEP_EPOCHS epochs in $seconds s" \
      "($(( 4 * 3600 / (seconds > 0 ? seconds : 1) )) folds/hour), peak GPU memory ${peak:-?} MiB;" \
      "$(tail -1 "$OUT/sweep_${backbone}_k$k.txt")" | tee -a "$summary"
  done
done
