# The two quickstart commands are `make run` and `make test`; each sets up what it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint setup system leaderboard

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

# The CPU-tier leaderboard published in docs/leaderboard/ (not part of the quickstart: about 2.5 hours
# on the quiet 2-core VM): all fifteen submissions under self-tuning (default points, 3 studies),
# then external tuning (5 trials x 3 studies of each search space) of AlgoPerf's four reference
# algorithms and the two other submissions with the best self-tuning scores, then one report of both.
SUBMISSIONS := adamw,nadamw,sgd_nesterov,momentum,adabelief,adadagrad,adahessian,adamp,exadam,lion,mfac,schedule_free_adamw,sgdp,shampoo,soap
REFERENCE_ALGORITHMS := adamw,nadamw,sgd_nesterov,momentum
LEADERBOARD := suite=cpu ruleset.num_studies=3 launcher=local launcher.workers=2
# The records behind it (run.json and evals.jsonl of every run), published beside the report: the same
# runs give the same bytes, and a test renders the published leaderboard from them.
REPRODUCIBLE_TAR := --sort=name --owner=0 --group=0 --numeric-owner --mtime=2026-01-01T00:00Z
BEST_TWO := import json, sys; s = json.load(sys.stdin)["scores"]; print(",".join(sorted((n for n in s if n not in "$(REFERENCE_ALGORITHMS)".split(",")), key=lambda n: (-s[n], n))[:2]))
leaderboard: $(STAMP)
	$(BIN)/pacer sweep experiment=leaderboard_self $(LEADERBOARD) submission=[$(SUBMISSIONS)] ruleset=self
	best=$$($(BIN)/pacer score results/leaderboard_self --format json --out results/leaderboard_self/scores | $(BIN)/python -c '$(BEST_TWO)') && \
	  $(BIN)/pacer sweep experiment=leaderboard_external $(LEADERBOARD) submission=[$(REFERENCE_ALGORITHMS),$$best] ruleset=external ruleset.num_trials=5
	$(BIN)/pacer report results/leaderboard_self results/leaderboard_external --out docs/leaderboard
	tar -cJf docs/leaderboard/records.tar.xz $(REPRODUCIBLE_TAR) -C results $(foreach r,self external,leaderboard_$(r)/sweep.json leaderboard_$(r)/$(r))
	cat docs/leaderboard/leaderboard.md

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
