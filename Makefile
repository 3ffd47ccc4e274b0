# The two set-up commands of the README: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= dev,ui,train,langchain,pdf2image,eval,text
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export DOCRAG_INDEX_DIR ?= $(CURDIR)/.docrag

.PHONY: install system-deps test-data demo test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip wheel
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@if $(PY) -c "import torchvision" 2>/dev/null; then echo "torchvision got installed: it breaks Qwen2-VL image processing here" >&2; exit 1; fi
	touch $@

system-deps:
	bash scripts/system-deps.sh

test-data: system-deps
	bash scripts/test-data.sh

# Index the example PDFs and search them: BM25 + the built-in dense text model (no download). The
# visual encoder is a tiny randomly initialised MoCa model, marked untrained, so search leaves its
# vectors out (and says so) until you point --encoder at a trained checkpoint.
demo: install
	$(PY) examples/make_examples.py --out examples
	$(VENV)/bin/docrag train init --preset tiny --out .docrag-models/tiny --force
	$(VENV)/bin/docrag index examples --encoder .docrag-models/tiny
	$(VENV)/bin/docrag search "quarterly revenue by region" --top-k 3

test: install test-data
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

# Every benchmark this machine can run, then benchmarks/RESULTS.md regenerated from the JSON.
# `make bench BENCH="eval index"` for some; `make bench BENCH=--quick` for a smoke run (results/quick/).
bench: install
	$(PY) -m benchmarks $(BENCH)

clean:
	rm -rf $(VENV) .docrag .docrag-models .test-data
