# `make test` and `make demo` create .venv (Python 3.10+) and install rejuv into it when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test test-fast demo lint gpu-check clean

# constraints.txt holds the exact set the tests run on (pyproject.toml only states ranges).
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

test: $(VENV)/.installed
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -q

# The unit tests alone (no model is built or trained): under a minute.
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow"

# The lab's twelve committed seeds (benchmarks/lab/small) and its planner check (benchmarks/lab/planner): seed
# $(SEED) is run here and compared with its committed record; the others are read from theirs. `make demo SEED=7`
# reruns another. From scratch: `rejuv demo --preset small` (3 seeds) or `--preset planner` (docs/lab.md).
SEED ?= 4
demo: $(VENV)/.installed
	$(VENV)/bin/rejuv demo --preset small --seeds 0,1,2,3,4,5,6,7,8,9,10,11 --pool benchmarks/lab/small \
		--reproduce $(SEED) --planner-records benchmarks/lab/planner --out runs/demo

# Every command on one GPU within 10 minutes (DEVELOPING.md); its summary goes to BENCHMARKS.md "On a GPU".
gpu-check: $(VENV)/.installed
	$(PY) benchmarks/gpu_check.py --device cuda --out gpu_check.json

lint: $(VENV)/.installed
	$(PY) -m ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache src/*.egg-info
