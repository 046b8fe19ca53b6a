# tomasulo: every set-up step lives here, so a fresh machine needs only `make demo` / `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

LLAMA  := $(VENV)/.llamacpp-stamp

.PHONY: demo test bench lint typecheck clean postgres

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

# llama.cpp's own grammar engine checks our GBNF; built from PyPI's source package (pip caches the wheel).
$(LLAMA): $(STAMP) scripts/install-llamacpp.sh
	bash scripts/install-llamacpp.sh $(PY)
	touch $(LLAMA)

# PostgreSQL binaries for tests/service (the tests start their own server as a non-root user).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; }

demo: $(STAMP)
	$(PY) examples/demo.py

test: $(STAMP) $(LLAMA) postgres
	TOMASULO_REQUIRE_POSTGRES=1 $(PY) -m pytest -q -p no:cacheprovider

# The end-to-end benchmark reads the LLMCompiler question sets from ../shared/datasets beside the
# clone (never copied here); `make bench DATASETS=DIR` points elsewhere. It runs last, so the
# benchmarks that need no data have run when it says the datasets are missing.
DATASETS ?=

bench: $(STAMP)
	$(PY) benchmarks/parse_bench.py
	$(PY) benchmarks/grammar_bench.py
	$(PY) benchmarks/dispatch_bench.py
	$(PY) benchmarks/tools_bench.py
	$(PY) benchmarks/prompt_cache_bench.py $(if $(DATASETS),--datasets $(DATASETS))
	$(PY) benchmarks/service_bench.py
	$(PY) benchmarks/e2e_bench.py $(if $(DATASETS),--datasets $(DATASETS))

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check tomasulo tests benchmarks examples
	$(VENV)/bin/mypy

typecheck: $(STAMP)
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
