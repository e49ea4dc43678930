#!/usr/bin/env bash
# Create .venv in the checkout (if missing) and install mqc-edge with everything the
# demo and the tests need. Idempotent: a stamp keyed on the dependency files skips the
# install when nothing changed, so the second Quickstart command and CI reuse the venv.
#
# Why the steps are ordered this way:
#   * torch==2.13.0 first: pip takes the CPU wheel from this machine's disk; any other
#     torch request pulls a multi-GB CUDA build.
#   * rf-sam-2 (Meta's SAM 2 code, imports as `sam2`) with --no-deps: its metadata asks
#     for torchvision, and PyPI's torchvision neither loads beside that torch nor lets
#     transformers import BertModel. sam2's video path never imports torchvision; its real
#     runtime dependencies (hydra-core, iopath, tqdm) are in our `export` extra.
#   * torchvision is removed if anything brought it in.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
SAM2_VERSION=1.0.3
TORCH_VERSION=2.13.0

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
stamp="$VENV/.mqc-edge-installed-$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
    exit 0
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
pip install "torch==$TORCH_VERSION"
pip install --no-deps "rf-sam-2==$SAM2_VERSION"
pip install -e ".[export,bench,geo,scale,modelopt,dev]"
if "$VENV/bin/python" -m pip show torchvision >/dev/null 2>&1; then
    pip uninstall -y torchvision
fi
rm -f "$VENV"/.mqc-edge-installed-*
touch "$stamp"
