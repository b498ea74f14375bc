#!/bin/bash
# Ship the default model: checkpoint + float32 ONNX (parity-gated) + sidecar with the FAR -> threshold table
# measured on the masked simulated-NIR test + MODEL_CARD.md, into sdk/assets/models.
#
#   tools/ship_default_model.sh RUN_DIR INIT_DIR TEST_FACES [LFW [tools/model_card.py options, e.g. --note TEXT]]
#
# RUN_DIR: the fine-tuning run (probe_net.pt, config.json); INIT_DIR: the run it started from (config.json,
# probe_net.pt), or - when it started from pretrained weights (hsst-train --init <name>); TEST_FACES: aligned crops of the test identities (export parity faces); LFW: raw LFW photos
# (default ../shared/datasets/lfw). Run from the repository root in the dev environment.
set -euo pipefail
RUN=${1:?usage: tools/ship_default_model.sh RUN_DIR INIT_DIR TEST_FACES [LFW]}
INIT=${2:?INIT_DIR missing}
FACES=${3:?TEST_FACES missing}
LFW=${4:-../shared/datasets/lfw}
shift $(( $# < 4 ? $# : 4 ))
M=sdk/assets/models
NAME=hsst-mobilefacenet-112
REPORTS=${REPORTS:-build/model_card}
mkdir -p "$M" "$REPORTS"
cp "$RUN/probe_net.pt" "$M/$NAME.pt"
# --optimize: PRelu rewritten for onnxruntime on CPU (exact; 2.4x faster per face than --simplify alone, measured
# with bench/bench_embed.py --onnx); a Jetson builds its engine from the .pt (hsst-export --weights NAME.pt --trt)
hsst-export --weights "$M/$NAME.pt" --data "$FACES" --output "$M" --name "$NAME" --simplify --optimize
# Evaluate exactly what ships, as the gate sees it: the ONNX, detection + 5-point alignment on raw LFW photos.
EVAL=(--model "$M/$NAME.onnx" --data "$LFW" --faces detect --protocol first-image
      --identities docs/study/lfw_split.json:test --max-probes 10 --no-progress --out "$REPORTS")
hsst-eval "${EVAL[@]}" --nir-sim --mask --write-thresholds --name onnx_masked_detect
# the checkpoint carries the same table (a re-export keeps the gate's thresholds); training paths become names
ALIASES=(); prev=""; for arg in "$@"; do [[ $prev == --alias ]] && ALIASES+=(--alias "$arg"); prev=$arg; done
python tools/seal_model.py --onnx "$M/$NAME.onnx" --checkpoint "$M/$NAME.pt" "${ALIASES[@]}"
hsst-eval "${EVAL[@]}" --nir-sim --name onnx_nonmasked_detect
hsst-eval "${EVAL[@]}" --name onnx_vis_detect
STAGES=()
[ "$INIT" != "-" ] && STAGES+=(--train-config "$INIT/config.json")
python tools/model_card.py --model "$M/$NAME.onnx" --checkpoint "$M/$NAME.pt" \
    "${STAGES[@]}" --train-config "$RUN/config.json" \
    --eval "ONNX, detect + align, masked=$REPORTS/onnx_masked_detect.json" \
    --eval "ONNX, detect + align, non-masked=$REPORTS/onnx_nonmasked_detect.json" \
    --eval "ONNX, detect + align, VIS probes=$REPORTS/onnx_vis_detect.json" \
    --out "$M/MODEL_CARD.md" "$@"
ls -l "$M"
