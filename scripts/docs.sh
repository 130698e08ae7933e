#!/usr/bin/env bash
# Builds the documentation site into site/ with Sphinx and myst-nb; any warning fails the build.
# The notebooks appear executed, with their plots (scripts/stage_notebooks.py says which copy each page shows),
# so a CI run that has executed them in the test suite does not execute them again.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/stage_notebooks.py stage notebooks docs/notebooks
# myst-nb writes beside the output folder, so Sphinx builds under build/docs and the result moves to site/.
rm -rf build/docs/html site
python3 -m sphinx -W --keep-going -q -b html -d build/docs/doctrees docs build/docs/html
mv build/docs/html site
echo "docs: site/index.html"
