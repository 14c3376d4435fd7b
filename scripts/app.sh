#!/usr/bin/env bash
# Launch the dashboard on http://127.0.0.1:8501 with the built-in default model (sets up .venv first).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/attnscope app "$@"
