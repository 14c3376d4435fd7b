#!/usr/bin/env bash
# Rebuild the built-in demo models (weights + metrics.json under sample_inputs/models/) and the sample
# inputs. Seeded and reproducible (1 torch thread); CPU time per model, measured: shapes-vit ~8 min,
# shapes-captioner ~4 min, recall-lm ~3 min, negation-classifier <1 min (see each metrics.json).
#   bash scripts/train_demos.sh                 # all four models, then samples
#   bash scripts/train_demos.sh recall-lm       # one model (names: shapes-vit shapes-captioner recall-lm negation-classifier)
# shapes-captioner starts from shapes-vit's encoder, so build shapes-vit first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || bash scripts/setup.sh
"$PY" -m demos.build "$@"
"$PY" -m demos.samples
