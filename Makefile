# One command to set up and run the main job (make demo), one to set up and test (make test).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup_system.sh
	bash scripts/setup_system.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

demo: setup
	$(BIN)/kinema demo

test: setup
	$(BIN)/pytest -n 2 -q

bench: setup
	$(BIN)/python benchmarks/worlds.py
	$(BIN)/python benchmarks/tokenizer.py
	$(BIN)/python benchmarks/generate.py
	$(BIN)/python benchmarks/decode.py
	$(BIN)/python benchmarks/critic.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
