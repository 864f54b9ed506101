# `make run` and `make test` each set up .venv themselves and are quick once it exists.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test clean

# Reinstall only when the package metadata changes. The log keeps setuptools'
# editable-install chatter off the terminal unless the install fails.
$(STAMP): pyproject.toml
	@echo "setting up $(VENV) (the first time takes a few minutes: torch is large)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[test]' > $(VENV)/install.log 2>&1 \
		|| { tail -n 30 $(VENV)/install.log; exit 1; }
	touch $(STAMP)

# One worker process per core: the 21 jobs are independent, and forked workers share the
# imports already made.
run: $(STAMP)
	$(BIN)/python run_stream.py --stream split-digits --epochs 3 --seeds 0,1,2 \
		--executor process --out runs/split-digits__default

test: $(STAMP)
	$(BIN)/ruff check lifelong streams memory tests benchmarks run_stream.py
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
