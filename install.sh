#!/usr/bin/env bash
# Installs rag-news and everything it needs into .venv, with llama.cpp built for a portable
# instruction set (x86-64 with AVX2, never AMX) so the local model runs on every machine.
#
#   ./install.sh          the product
#   ./install.sh test     the product and what the tests and benchmarks need
#
# RAG_LLAMA_BUILD=avx512 ./install.sh builds llama.cpp with AVX-512 instead (faster where the CPU
# has it, see the README); the build flags are in rag/llama_build.py.
set -euo pipefail
cd "$(dirname "$0")"
extras=${1:-}
build=${RAG_LLAMA_BUILD:-portable}
args=$(python3 -m rag.llama_build cmake-args "$build") || { echo "install.sh: RAG_LLAMA_BUILD must be portable or avx512" >&2; exit 2; }
version=$(python3 -m rag.llama_build version)

python3 -m venv .venv
# torch first and pinned: 2.13.0 is the CPU wheel; a bare torch requirement pulls GBs of CUDA packages
.venv/bin/pip install -q torch==2.13.0

# llama-cpp-python compiles llama.cpp (about 5 minutes on 2 cores), once per build: the wheel is kept in
# .whl/. pip's own cache is bypassed because it keys a built wheel by its source, not by CMAKE_ARGS, so a
# wheel built earlier with -march=native (pip's default here) would otherwise be reused silently.
wheels=".whl/llama-cpp-python-$version-$build"
if ! compgen -G "$wheels/*.whl" >/dev/null; then
  echo "building llama-cpp-python $version for '$build': $args" >&2
  rm -rf "$wheels.tmp"
  CMAKE_ARGS="$args" .venv/bin/pip wheel -q --no-cache-dir --no-deps -w "$wheels.tmp" "llama-cpp-python==$version"
  mv "$wheels.tmp" "$wheels"
fi
.venv/bin/pip install -q --force-reinstall --no-deps "$wheels"/*.whl
.venv/bin/pip install -q -e ".${extras:+[$extras]}"
echo "$build" > .venv/llama-build
avx512="avx512f avx512bw avx512dq avx512vl avx512vbmi avx512_vnni avx512_bf16"
if [ "$build" = portable ] && [ "$(grep -m1 -ow -E "${avx512// /|}" /proc/cpuinfo 2>/dev/null | sort -u | wc -l)" = 7 ]; then
  echo "install.sh: this CPU has AVX-512: 'RAG_LLAMA_BUILD=avx512 ./install.sh' builds a llama.cpp that reads" \
       "prompts about 1.4x faster here (README: The local model and your CPU)" >&2
fi
