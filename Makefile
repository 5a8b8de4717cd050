# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp
FMNIST  := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: demo test lint bench install fashion-mnist clean

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch==2.13.0 is pinned in the extra: pip takes the CPU wheel, never a CUDA build.
	$(PY) -m pip install -q -e '.[dev,torch,ray,dp,opacus,he,chain,p2p]'
	# A test oracle only: the one-run audit bound is checked against jax_privacy/auditing.py, loaded by
	# path (it needs numpy, scipy and dp-accounting; the package's JAX dependencies are not installed).
	$(PY) -m pip install -q --no-deps jax-privacy==2.0.0
	touch $(STAMP)

# Real Fashion-MNIST ships as a Debian package; without it the fashion_mnist loader says how to get it.
fashion-mnist:
	@if [ ! -f $(FMNIST) ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
	      || echo "note: could not install dataset-fashion-mnist; Fashion-MNIST tests will be skipped"; \
	  else echo "note: run 'sudo apt-get install dataset-fashion-mnist' for the Fashion-MNIST data set"; fi; \
	fi

demo: $(STAMP) fashion-mnist
	$(VENV)/bin/deai demo

test: $(STAMP) fashion-mnist
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	bash benchmarks/setup_flower.sh
	$(PY) benchmarks/bench_vs_flower.py
	$(PY) benchmarks/bench_aggregators_vs_flower.py
	$(PY) benchmarks/bench_secagg_vs_flower.py
	$(PY) benchmarks/bench_he.py

clean:
	rm -rf $(VENV) runs .pytest_cache
