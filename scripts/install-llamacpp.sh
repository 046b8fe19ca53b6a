#!/usr/bin/env bash
# Build llama-cpp-python from PyPI's source package (no prebuilt wheel), CPU only, as small as
# llama.cpp's CMake options allow: no BLAS/OpenMP/GPU back ends, no multimodal (mtmd/llava)
# library, no tests, examples, tools or server, no HTTPS. Used by `make test` for the grammar
# sampler tests (pytest -m llamacpp). Usage: scripts/install-llamacpp.sh [path/to/python]
set -euo pipefail
PY="${1:-.venv/bin/python}"
if "$PY" -c "import llama_cpp" 2>/dev/null; then
    echo "llama-cpp-python already installed"
    exit 0
fi
export CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_BLAS=OFF -DGGML_OPENMP=OFF -DGGML_NATIVE=ON \
-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
-DLLAMA_BUILD_SERVER=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
"$PY" -m pip install --no-binary llama-cpp-python "llama-cpp-python>=0.3" gguf
