# Two commands do all set-up: `make demo` and `make test`. Both create .venv first.
# The tests run with LangGraph's strict checkpoint deserialization, as every entry point must work under it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test serve bench bench-load bench-router clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,service,studio]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/handoff demo customer-service

test: $(STAMP)
	bash scripts/ensure-services.sh
	bash scripts/install-browser.sh
	$(BIN)/ruff check .
	LANGGRAPH_STRICT_MSGPACK=true $(BIN)/pytest

serve: $(STAMP)
	$(BIN)/python -m handoff.service

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks.storage

bench-router: $(STAMP)
	$(BIN)/python -m benchmarks.semantic_trigger

bench-load: $(STAMP)
	bash scripts/ensure-services.sh
	$(BIN)/python -m benchmarks.load --vs-floor 2

clean:
	rm -rf $(VENV) .handoff
