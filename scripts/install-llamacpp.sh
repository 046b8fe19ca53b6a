#!/usr/bin/env bash
# Build llama-cpp-python from PyPI's source package (no prebuilt wheel), CPU only, as small as
# llama.cpp's CMake options allow: no BLAS/OpenMP/GPU back ends, no multimodal (mtmd/llava)
# library, no tests, examples, tools or C++ server, no HTTPS. With the `[server]` extra: the
# OpenAI-compatible server (`python -m llama_cpp.server`) that tests/engines runs on loopback.
# Used by `make test` for the grammar sampler and engine tests (pytest -m llamacpp).
# Usage: scripts/install-llamacpp.sh [path/to/python]
set -euo pipefail
PY="${1:-.venv/bin/python}"
if "$PY" -c "import llama_cpp.server.app, gguf" 2>/dev/null; then
    echo "llama-cpp-python (with its server) already installed"
    exit 0
fi
export CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_BLAS=OFF -DGGML_OPENMP=OFF -DGGML_NATIVE=ON \
-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
-DLLAMA_BUILD_SERVER=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
# an installed llama-cpp-python that meets the pin is kept: only the server's extras are added
"$PY" -m pip install --no-binary llama-cpp-python "llama-cpp-python[server]>=0.3" gguf
