#!/usr/bin/env bash
# Re-pin every development dependency to the newest versions that install together today:
# a clean virtual environment from pyproject.toml, frozen into constraints.txt.
#     bash scripts/refresh_constraints.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
python3 -m venv "$scratch/venv"
"$scratch/venv/bin/pip" install -q -e '.[dev,bench]'
{
    echo "# Exact versions for the development install (README, .ci/run): pip install -c constraints.txt"
    echo "# Made by scripts/refresh_constraints.sh; refresh it there, then run the suite."
    "$scratch/venv/bin/pip" freeze --exclude-editable | grep -v '^-e '
} > constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) packages pinned"
