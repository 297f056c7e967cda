#!/usr/bin/env bash
# Every GPU check in one script, for a machine with a CUDA GPU and this repo's .venv:
#   1. training/inference throughput of hrnet_w64 and resnet34, bf16 + channels_last vs fp32;
#   2. one real-size 20-epoch hrnet_w64 fold (the reference's 3a/302 config, random init) on
#      the `full` synthetic profile, generated here (809 train / 312 val / 463 test samples);
#   3. one resnet34 fold of 3a/302 twice, fp32 (the original's precision) and bf16 autocast
#      (same seed, same epochs): OOF losses and times, to judge the bf16 default.
# Results go to $OUT (default gpu_results/): bench_*.json, the run folder, and summary.txt.
#
#   OUT=gpu_results bash scripts/gpu_check.sh
#   PROFILE=tiny EPOCHS=1 BACKBONES=resnet18 FOLD_BACKBONE=resnet18 PRECISION_BACKBONE=resnet18 \
#     bash scripts/gpu_check.sh  # CPU smoke
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
