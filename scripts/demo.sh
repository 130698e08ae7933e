#!/usr/bin/env bash
# The main job: install c3, then train small cascades (C3, mean pooling, truncation) on 2x, 4x and 8x on the CPU
# (about 12 minutes on 2 Zen 4 cores, 24 on Zen 3) and write reports/demo/report.md with its plots.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m c3.cli demo --output reports/demo "$@"
