# Every target sets itself up on a fresh machine that has only Python 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_WORKERS ?= 2

.PHONY: demo test bench fuzz lint docs clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m cgpt.demo

# One BLAS thread per test worker: two workers with two threads each on two cores stall numpy's small matmuls.
test: $(STAMP)
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q tests

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

fuzz: $(STAMP)
	CGPT_FUZZ_EXAMPLES=5000 $(BIN)/python -m pytest -q tests -k fuzz

lint: $(STAMP)
	$(BIN)/ruff check cgpt tests benchmarks

docs: $(STAMP)
	$(BIN)/python -m cgpt.ir.opdocs > docs/ops.md

clean:
	rm -rf build $(VENV)
