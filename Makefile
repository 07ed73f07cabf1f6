# Two entry points (see README): `make run` pretrains + evaluates on the default data;
# `make test` installs into its own virtualenv and runs the test suite.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
WORKDIR ?= runs/simclr_cifar10_demo
CONFIG ?= experiments/configs/simclr_cifar10.py:demo
TEST_ARGS ?= -n 2 --dist worksteal --durations=30

.PHONY: install run test lint clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m ssl_jax.main --config $(CONFIG) --workdir $(WORKDIR) --evaluate

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(TEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache
