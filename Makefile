# creator-econ: `make demo` to see it, `make test` to check it. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data
CREATORS ?= 2000
DAYS ?= 30
PORT ?= 8501
# pytest processes; each test file runs whole in one of them (its fixtures are set up once)
TEST_WORKERS ?= 2

.PHONY: demo test lint install dagster bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=15

lint: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: install
	@if [ -d $(DATA)/telemetry/sealed ]; then \
	  echo "using the telemetry already in $(DATA)/telemetry (make clean to start over)"; \
	else \
	  $(BIN)/creator-econ simulate --out $(DATA)/telemetry --creators $(CREATORS) --days $(DAYS); \
	fi
	$(BIN)/creator-econ run --telemetry $(DATA)/telemetry --marts $(DATA)/marts --data $(DATA)
	@echo "dashboard: http://localhost:$(PORT)  (Ctrl-C to stop)"
	$(BIN)/creator-econ dashboard --marts $(DATA)/marts --port $(PORT)

dagster: install
	mkdir -p .dagster_home
	cp dagster.yaml .dagster_home/dagster.yaml
	DAGSTER_HOME=$(CURDIR)/.dagster_home CREATOR_ECON_DATA=$(DATA) \
	  $(BIN)/dagster dev -m pipelines.definitions

bench: install
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python bench/scale.py --out /tmp/creator-econ-scale --chart docs/scale.png

clean:
	rm -rf $(DATA) .dagster_home
