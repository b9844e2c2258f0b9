# One command to set everything up and train LeNet (`make demo`), one to run the tests (`make test`).
# TORCH pins PyTorch so pip takes the CPU build; on a CUDA machine use e.g. `make demo TORCH=torch`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
# Use the workplace's shared data folder when there is one; otherwise deepnn finds or downloads the data.
export DEEPNN_DATA ?= $(wildcard $(CURDIR)/../shared/data)

.PHONY: install demo test lint bench mutation clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install  ## train the lecture's LeNet on Fashion-MNIST with its default recipe
	$(BIN)/deepnn train lenet

test: install  ## the whole test suite (offline), on 2 processes (pytest-xdist)
	$(BIN)/python -m pytest -q -n 2

lint: install
	$(BIN)/ruff check deepnn tests benchmarks

bench: install  ## trainer overhead and time-to-accuracy (docs/benchmarks.md)
	$(BIN)/python benchmarks/bench_trainer.py
	$(BIN)/python benchmarks/time_to_accuracy.py

mutation: install  ## mutation testing of deepnn/ops, layers, models (about an hour; docs/testing.md)
	benchmarks/mutation.sh

clean:
	rm -rf $(VENV) .pytest_cache runs
