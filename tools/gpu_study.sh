#!/bin/bash
# The study's fine-tuning grid from the MS1M import on a lent GPU machine, as one prepared script.
#
#   here (CPU):   tools/gpu_study.sh pack CROPS [PACK]     # PACK default build/gpu_pack (ignored, never committed)
#   device:       tools/gpu_study.sh run [PACK] [OUT]      # OUT default $OUT (the device tool's return folder)
#
# `pack` copies what the device needs and cannot fetch (it reaches no network) into one folder under the
# 64 MiB the device tool carries: the study split's train and test identities of CROPS (aligned 112 px crops,
# `hsst-mask --no-mask --align 112`), re-encoded as JPEG quality 90, and the MS1M import saved as a checkpoint
# (`python -m hsst.train.models.pretrained save`). `run` needs a Python with hsst's requirements and a CUDA torch
# on the device (the carried venv's torch is the CPU build); it checks that first and says so. It trains every
# Table I/II run (plain with an imprinted head, HSST; four losses; masked and non-masked training; seeds 0 and 1
# for the headline rows) on the GPU with the validation split's choices (lr 1e-4, ema 0.97, queue 128),
# evaluates each on the test split; beside the tables, on the same test images, the label-free distillation
# baseline (`hsst-train --method distill` from the MS1M teacher, carried in the pack) and HSST with the teacher
# term (`--teacher-weight 10`); it writes OUT/study, OUT/beside (results, logs, checkpoints) and OUT/RESULTS.md.
# Budget: ITERS (default 600 iterations of 64) keeps the grid near 6 minutes on an H100; the device tool's
# limit is 10 minutes per command, so pass timeout_s 600 and rerun it to resume (finished runs are skipped).
#
#   run(command="ITERS=600 tools/gpu_study.sh run build/gpu_pack", carry=["build/gpu_pack"], timeout_s=600)
set -euo pipefail
cd "$(dirname "$0")/.."
SPLIT=docs/study/lfw_split.json

pack() {
  local crops=${1:?usage: tools/gpu_study.sh pack CROPS [PACK]} dest=${2:-build/gpu_pack}
  mkdir -p "$dest/crops"
  python - "$crops" "$dest/crops" "$SPLIT" <<'EOF'
import json, sys
from pathlib import Path
import cv2
src, dst, split = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(Path(sys.argv[3]).read_text())
names = split["train"]["identities"] + split["test"]["identities"]
count = 0
for name in names:
    folder = src / name
    if not folder.is_dir():
        sys.exit(f"{folder} is missing: CROPS must be aligned crops of the whole LFW (hsst-mask --no-mask --align 112)")
    (dst / name).mkdir(parents=True, exist_ok=True)
    for image in sorted(folder.iterdir()):
        out = dst / name / (image.stem + ".jpg")
        if not out.exists():
            crop = cv2.imread(str(image), cv2.IMREAD_COLOR)
            if crop is None:
                continue
            cv2.imwrite(str(out), crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
        count += 1
print(f"{count} crops of {len(names)} identities in {dst}")
EOF
  [ -f "$dest/init.pt" ] || python -m hsst.train.models.pretrained save mobilefacenet-ms1m --out "$dest/init.pt"
  # the distillation's teacher: the fetched .tflite, where hsst.pretrained finds it ($HSST_CACHE/models)
  mkdir -p "$dest/cache/models"
  cp "$(python -c 'from hsst.pretrained import pretrained_path; print(pretrained_path("mobilefacenet-ms1m"))')" "$dest/cache/models/"
  du -sh "$dest"
}

run() {
  local pack=${1:-build/gpu_pack} out=${2:-${OUT:?OUT is not set: pass the output folder}}
  [ -d "$pack/crops" ] && [ -f "$pack/init.pt" ] || { echo "no pack at $pack: run 'tools/gpu_study.sh pack CROPS' here first and carry it" >&2; exit 2; }
  python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'torch ' + torch.__version__ + ' sees no CUDA GPU: this needs a CUDA build of torch on the device')"
  python -c "import hsst" 2>/dev/null || pip install --no-deps --no-build-isolation -q -e . || export PYTHONPATH=$PWD/sdk:${PYTHONPATH:-}
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  mkdir -p "$out"
  python tools/study.py run --lfw "$pack/crops" --faces aligned --init "$pack/init.pt" --iters "${ITERS:-600}" \
      --seeds 0,1 --device cuda --no-progress --eval-batch-size 256 --out "$out/study" \
      --common-args '--input-size 112 --batch-size 64 --workers 4 --save-every 100' \
      --train-args '--lr 0.0001 --ema 0.97' 2>&1 | tee -a "$out/study.log"
  local distill="$out/beside_runs/distill"
  [ -f "$distill/train_done.json" ] || HSST_CACHE="$pack/cache" python -m hsst.train.cli --method distill --init mobilefacenet-ms1m \
      --data "$out/study/data/train" --nir-transform nir-sim+mask --input-size 112 --batch-size 64 \
      --iters "${DISTILL_ITERS:-250}" --lr 0.001 --device cuda --workers 4 --save-every 50 --no-progress \
      --out "$distill" $([ -f "$distill/last.ckpt" ] && echo --resume) 2>&1 | tee -a "$out/study.log"
  python tools/study.py run --lfw "$pack/crops" --faces aligned --init "$distill/probe_net.pt" --seeds 0 \
      --device cuda --no-progress --eval-batch-size 256 --out "$out/beside/distill" --only pretrain 2>&1 | tee -a "$out/study.log"
  python tools/study.py run --lfw "$pack/crops" --faces aligned --init "$pack/init.pt" --iters "${ITERS:-600}" \
      --seeds 0,1 --device cuda --no-progress --eval-batch-size 256 --out "$out/beside/hsst_teacher10" \
      --common-args '--input-size 112 --batch-size 64 --workers 4 --save-every 100' \
      --train-args '--lr 0.0001 --ema 0.97 --teacher-weight 10' --only 'pretrain,hsst-softmax-masked-*' 2>&1 | tee -a "$out/study.log"
  python tools/study.py report --runs "$out/study" --out "$out/RESULTS.md" --baselines "$out/beside"
}

case "${1:-}" in
  pack) shift; pack "$@" ;;
  run) shift; run "$@" ;;
  *) echo "usage: tools/gpu_study.sh pack CROPS [PACK] | run [PACK] [OUT]" >&2; exit 2 ;;
esac
