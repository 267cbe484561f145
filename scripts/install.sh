#!/usr/bin/env bash
# Creates .venv with the real SGLang runtime for CPU (no CUDA packages) and this project in it.
# Idempotent: a second run with unchanged requirements does nothing.
# GPU machines: see README ("GPU install") -- plain `pip install sglang[all]` plus this project.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
STAMP="$VENV/.scbench-installed"
want=$(cat requirements/*.txt pyproject.toml sglang_cpu_compat.pth | sha256sum | cut -d' ' -f1)

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    exit 0
fi

start=$(date +%s)
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
export PIP_CONSTRAINT="$PWD/requirements/constraints-cpu.txt"  # never let anything swap torch

"${pip[@]}" --upgrade pip
"${pip[@]}" "torch==2.13.0"
"${pip[@]}" -r requirements/sglang-cpu.txt -r requirements/project.txt
"${pip[@]}" --no-deps -r requirements/sglang-nodeps.txt
"${pip[@]}" --no-deps -e .

"$VENV/bin/python" -c "import torch, sys; sys.exit(0 if not torch.version.cuda else 'a CUDA torch was installed; expected the CPU build')"
echo "$want" > "$STAMP"
echo "installed into $VENV in $(( $(date +%s) - start ))s ($(du -sh "$VENV" | cut -f1))" >&2
