#!/usr/bin/env bash
# Snakemake runs this in the new environment, from the workflow's working directory (the repository root),
# after creating it from the .yaml of the same name. Installs the package under src/ editable, so the rules'
# scripts import the repository's current code (PYTHONPATH does not reach into conda environments). The
# dependencies come from the .yaml, pinned.
set -euo pipefail
python -m pip install --no-deps --editable .
