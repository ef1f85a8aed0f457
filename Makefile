# The two quickstart commands are `make run` and `make test`; each sets up what it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint setup system

# The main job: AlgoPerf's four reference algorithms on the CPU suite (self-tuning ruleset,
# three studies, their default points, two one-thread runs at a time: the normalized clock
# keeps their times in reference seconds), then scores and the report. Re-running it launches
# only what is missing.
QUICKSTART := experiment=quickstart suite=cpu submission=[adamw,nadamw,sgd_nesterov,momentum] ruleset=self ruleset.num_studies=3 launcher=local launcher.workers=2
run: $(STAMP)
	$(BIN)/pacer sweep $(QUICKSTART)
	$(BIN)/pacer status experiment=quickstart --wait
	$(BIN)/pacer report results/quickstart --out results/quickstart/report
	cat results/quickstart/report/leaderboard.md

test: $(STAMP) system lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check harness workloads submissions tests benchmarks
	$(BIN)/mypy

setup: $(STAMP)

# The virtual environment, rebuilt when the project's requirements change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# System services the tests use (a one-node Slurm cluster, headless Chromium), where this
# user may install them; tests that need a missing one skip and say why.
system:
	bash tests/system/setup.sh
