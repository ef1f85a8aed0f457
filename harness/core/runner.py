"""The timer-controlled training loop, following AlgoPerf's timing rules.

* Setup (data, model init, `init_optimizer_state`) is untimed.
* `data_selection` + `update_params` and `prepare_for_eval` are timed: that is the
  accumulated submission time, the only clock the score uses.
* Evaluation and logging are untimed. An eval happens after step 1 and then whenever
  `eval_period_time_sec` of wall time has passed since the end of the last one, or every
  `eval_every_steps` steps where the workload (every normalized-clock workload) or the run
  sets it: then the eval sequence does not depend on the machine's speed.
* Time is the workload's clock (`harness.core.timer`): wall seconds, or reference seconds on the
  normalized clock, whose probes run untimed between steps. Eval rows carry both.
* The run stops when the validation target is reached, when the submission time exceeds
  the budget (checked before each eval; no eval happens past the budget), on
  `TrainingCompleteError` (after one final eval), or at an optional step cap.
* A preemption signal ends it as `preempted` at the next step boundary; the caller saves a
  checkpoint (`harness.core.checkpoint`), and a later runner continues from it.
* A non-finite loss at an eval ends the run as `diverged`; an exception raised by the
  submission (or the workload) ends it as `error` with its traceback. Neither escapes.
  A record the results folder refuses to take (`StorageError`: full disk, read-only) does:
  it is no fault of the submission, and the run stays resumable.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import inspect
import math
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

import torch

from harness.core import distributed
from harness.core import rng as rnglib
from harness.core.errors import StorageError
from harness.core.spec import (
    Batch,
    EvalResults,
    Hyperparameters,
    Submission,
    TrainingCompleteError,
    Workload,
)
from harness.core.timer import Clock, Reference


@dataclass(frozen=True)
class RunSettings:
    seed: int
    max_steps: int | None = None
    eval_every_steps: int | None = None
    """Deterministic mode: eval on a step schedule instead of the wall-clock period."""
    max_runtime_sec: float | None = None
    """The run's budget: jobs pass `RunConfig.budget` (override, or the workload's times the
    ruleset's multiplier); None, for direct users of the runner, keeps the workload's."""
    stop_at_target: bool = True
    """False trains on past the validation target (target setting runs to a fixed step budget)."""


@dataclass
class RunOutcome:
    status: str
    global_step: int = 0
    examples_seen: int = 0
    evals: list[EvalResults] = field(default_factory=list)
    time_to_target: dict[str, float | None] = field(default_factory=lambda: {"validation": None, "test": None})
    raw_time_to_target: dict[str, float | None] = field(default_factory=lambda: {"validation": None, "test": None})
    """Wall seconds of submission time to each target (equal to `time_to_target` on the wall clock)."""
    steps_to_target: dict[str, int | None] = field(default_factory=lambda: {"validation": None, "test": None})
    examples_to_target: dict[str, int | None] = field(default_factory=lambda: {"validation": None, "test": None})
    error: str | None = None


EvalObserver = Callable[[EvalResults], None]


T = TypeVar("T")

_RUN_BATCH_SIZES: contextvars.ContextVar[Mapping[str, int] | None] = contextvars.ContextVar("pacer_run_batch_sizes", default=None)


@contextlib.contextmanager
def answering_for(workload: Workload) -> Iterator[None]:
    """While the runner asks a submission for its batch size: `reference_batch_size` of the
    run's workload is the built workload's own `batch_size`, with the run's overrides and its
    variant's value (AlgoPerf's `get_batch_size` is passed only the base name)."""
    size = workload.reference_batch_size
    token = _RUN_BATCH_SIZES.set({workload.name: size, workload.base_name: size})
    try:
        yield
    finally:
        _RUN_BATCH_SIZES.reset(token)


def running_batch_size(workload_name: str) -> int | None:
    """The running workload's reference batch size while `answering_for` it, else None."""
    return (_RUN_BATCH_SIZES.get() or {}).get(workload_name)
UNKNOWN_WORKLOAD_ERRORS = (ValueError, KeyError, NotImplementedError)
"""What AlgoPerf submissions' `get_batch_size` raises for a workload name it does not know."""


def batch_size_for(submission: Submission, workload: Workload) -> tuple[int, str | None]:
    """The submission's global batch size for `workload` (asked by its base name, as AlgoPerf
    does), and a warning when the submission does not know that name: then the workload's
    reference batch size (its config's `batch_size`), which Pacer-only workloads always need
    for AlgoPerf's leaderboard files. Any other exception propagates (the run's `error`)."""
    name = workload.base_name
    try:
        with answering_for(workload):
            return int(submission.get_batch_size(name)), None
    except UNKNOWN_WORKLOAD_ERRORS as e:
        size = workload.reference_batch_size
        return size, f"get_batch_size({name!r}) raised {type(e).__name__}: {e}; using the workload's reference batch size {size}"


def keyword_caller(fn: Callable[..., T]) -> Callable[..., T]:
    """`fn` called by keyword with only the arguments it names, as AlgoPerf calls
    `update_params` and `prepare_for_eval`: `train_state` reaches only a function that takes it.
    A `**kwargs` catch-all takes every argument. The signature is read once, here."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return fn
    names = frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return lambda **arguments: fn(**{k: v for k, v in arguments.items() if k in names})


def batch_size_of(batch: Batch) -> int:
    """Number of real examples in a batch: the rows of `weights` with any weight (padding has
    weight 0; per-label weights such as ogbg's (B, 128) mask count their example once), else
    the examples of `inputs` (of its values for a (values, paddings) pair)."""
    if "weights" in batch:
        weights = batch["weights"]
        return int((weights.reshape(len(weights), -1) > 0).any(dim=1).sum().item())
    inputs = batch["inputs"]
    return len(inputs[0] if isinstance(inputs, tuple) else inputs)


class Runner:
    """One training run. Create it, then call `run()` once (or `setup()`, then `step()` while
    `outcome.status` is "running")."""

    def __init__(self, workload: Workload, submission: Submission, hyperparameters: Hyperparameters, settings: RunSettings, on_eval: EvalObserver = lambda row: None,
                 should_stop: Callable[[], bool] = lambda: False, resume_from: Mapping[str, object] | None = None,
                 at_step_boundary: Callable[[Runner], None] = lambda runner: None, on_warning: Callable[[str], None] = lambda text: None):
        """`should_stop` is polled between steps (a preemption signal); `resume_from` is a
        checkpoint (`harness.core.checkpoint`) to continue from; `at_step_boundary` is called
        untimed after each step of a continuing run (periodic checkpoints); `on_warning`
        sees each warning when it arises (they are also kept in `warnings`)."""
        self.workload = workload
        self.submission = submission
        self.hparams = hyperparameters
        self.settings = settings
        self.on_eval = on_eval
        self.should_stop, self.resume_from, self.at_step_boundary, self.on_warning = should_stop, resume_from, at_step_boundary, on_warning
        self.budget = settings.max_runtime_sec or workload.max_allowed_runtime_sec
        self.outcome = RunOutcome(status="running")
        self.batch_size: int | None = None
        self.warnings: list[str] = []
        """What the record should say beside the outcome (e.g. the batch size was not the submission's)."""
        self.eval_history: list[tuple[int, EvalResults]] = []
        self._state = {
            "accumulated_submission_time": 0.0, "accumulated_eval_time": 0.0, "accumulated_logging_time": 0.0,
            "is_time_remaining": True, "validation_goal_reached": False, "test_goal_reached": False,
            "training_complete": False, "last_eval_time": 0.0, "global_step": 0, "examples_seen": 0,
            "last_eval_results": {},
        }
        self.train_state = MappingProxyType(self._state)
        self.clock = Clock(workload.device)  # replaced in setup by the workload's clock, with its reference

    def setup(self) -> None:
        """Untimed: seeds, model, data stream, optimizer state."""
        init_rng, data_rng, opt_rng, self.step_rng = rnglib.split(self.settings.seed, 4)
        rnglib.seed_everything(self.settings.seed)
        dropout = self.hparams.get("dropout_rate")
        self.params, self.model_state = self.workload.init_model_fn(init_rng, dropout_rate=None if dropout is None else float(dropout))
        self.batch_size, warning = batch_size_for(self.submission, self.workload)
        if warning:
            self.warnings.append(warning)
            self.on_warning(warning)
        self.update_params = keyword_caller(self.submission.update_params)
        prepare = getattr(self.submission, "prepare_for_eval", None)
        self.prepare_for_eval = None if prepare is None else keyword_caller(prepare)
        self.input_queue = self.workload.build_input_queue(data_rng, self.batch_size)
        self.optimizer_state = self.submission.init_optimizer_state(self.workload, self.params, self.model_state, self.hparams, opt_rng)
        self.params_types = self.workload.model_params_types
        self.clock = Clock(self.workload.device, self._reference())
        self.world_size = distributed.world_size()
        self.last_eval_end = self.clock.now()
        if self.resume_from is not None:
            self.load_state_dict(self.resume_from)
        self.clock.start_reference()

    def _reference(self) -> Reference | None:
        """The normalized clock's yardstick, built apart from the training state (untimed)."""
        if self.workload.clock != "normalized":
            return None
        return Reference(self.workload.reference_computation(), self.workload.reference_step_sec)

    def state_dict(self) -> dict[str, object]:
        """Everything needed to continue this run from its current step boundary, as tensors
        and plain values (what `weights_only` loading accepts; `harness.core.checkpoint` writes it)."""
        now = self.clock.now()
        return {
            "params": self.params.state_dict(),
            "model_state": self.model_state,
            "optimizer_state": {key: _pack(value) for key, value in self.optimizer_state.items()},
            "rng": rnglib.global_states(),
            "input_queue": self.input_queue.state_dict(),
            "clock": self.clock.state_dict() | {"elapsed": now - self.clock.started, "since_last_eval": now - self.last_eval_end},
            "eval_history": self.eval_history,
            "outcome": dataclasses.asdict(self.outcome),
            "train_state": dict(self.train_state),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Put a freshly set-up run back where `state_dict` left it (called from `setup`)."""
        self.params.load_state_dict(state["params"])
        self.model_state = state["model_state"]
        for key, packed in state["optimizer_state"].items():
            if "state_dict" in packed:
                stateful: Any = self.optimizer_state[key]  # an optimizer, a scheduler: anything `_pack` saw a state_dict on
                stateful.load_state_dict(packed["state_dict"])
            elif "deque" in packed:
                self.optimizer_state[key] = collections.deque(packed["deque"], packed["maxlen"])
            else:
                self.optimizer_state[key] = packed["value"]
        self.input_queue.load_state_dict(state["input_queue"])
        self.eval_history = list(state["eval_history"])
        self.outcome = dataclasses.replace(self.outcome, **state["outcome"] | {"status": "running"})
        self._state.update(state["train_state"])
        clock = state["clock"]
        self.clock.load_state_dict(clock)
        now = self.clock.now()
        self.clock.started = now - clock["elapsed"]
        self.last_eval_end = now - clock["since_last_eval"]
        rnglib.set_global_states(state["rng"])

    def run(self) -> RunOutcome:
        try:
            self.setup()
            while self.outcome.status == "running":
                self.step()
        except StorageError:
            raise  # the results folder's fault, not the submission's: the run stays resumable
        except Exception:  # noqa: BLE001 - the run, not the caller, must absorb any failure
            self.outcome.status, self.outcome.error = "error", traceback.format_exc()
        return self.outcome

    def step(self) -> None:
        """One step of a set-up run: the timed training step, then (untimed) the eval and stop
        decisions, the step-boundary hook and the stop poll. `run()` repeats it; a benchmark
        may drive it in blocks (benchmarks/runner_overhead.py)."""
        self._train_step()
        self._after_step()
        if self.outcome.status == "running":
            self.at_step_boundary(self)
            if self.should_stop():
                self.outcome.status = "preempted"  # the caller checkpoints and requeues

    def _train_step(self) -> None:
        step = self.outcome.global_step
        rng = rnglib.fold_in(self.step_rng, step)
        try:
            with self.clock.phase("submission"):
                batch = self.submission.data_selection(self.workload, self.input_queue, self.optimizer_state, self.params, self.model_state, self.hparams, step, rng)
                self.optimizer_state, self.params, self.model_state = self.update_params(
                    workload=self.workload, current_param_container=self.params, current_params_types=self.params_types,
                    model_state=self.model_state, hyperparameters=self.hparams, batch=batch, loss_type=self.workload.loss_type,
                    optimizer_state=self.optimizer_state, eval_results=self.eval_history, global_step=step, rng=rng,
                    train_state=self.train_state)
        except TrainingCompleteError:
            self._state["training_complete"] = True
            return
        self.outcome.global_step += 1
        # Under DDP each process holds its shard of the global batch.
        self.outcome.examples_seen += batch_size_of(batch) * self.world_size

    def _after_step(self) -> None:
        state = self._state
        state["global_step"], state["examples_seen"] = self.outcome.global_step, self.outcome.examples_seen
        if self.clock.probe_due():
            self.clock.probe()
        if not self._time_remaining():
            self.outcome.status = "budget_exhausted"
        elif state["training_complete"] or self._eval_due():
            self._prepare_and_evaluate()
        if self.outcome.status == "running" and self.settings.max_steps and self.outcome.global_step >= self.settings.max_steps:
            self.outcome.status = "step_cap"

    def _time_remaining(self) -> bool:
        """Read the clock once (under DDP each read is a collective) and record it in train_state."""
        spent = self.clock.submission_time
        remaining = spent < self.budget
        self._state["accumulated_submission_time"], self._state["is_time_remaining"] = spent, remaining
        return remaining

    def _eval_due(self) -> bool:
        step = self.outcome.global_step
        if step == 1:
            return True
        every = self.settings.eval_every_steps or self.workload.eval_every_steps
        if every:
            return step % every == 0
        return self.clock.since(self.last_eval_end) >= self.workload.eval_period_time_sec

    def _prepare_and_evaluate(self) -> None:
        if self.prepare_for_eval is not None:
            rng = rnglib.fold_in(self.step_rng, -self.outcome.global_step)
            with self.clock.phase("submission"), rnglib.isolated_streams(rng, self.workload.device):
                self.optimizer_state, self.params, self.model_state = self.prepare_for_eval(
                    workload=self.workload, current_param_container=self.params, current_params_types=self.params_types,
                    model_state=self.model_state, hyperparameters=self.hparams, loss_type=self.workload.loss_type,
                    optimizer_state=self.optimizer_state, eval_results=self.eval_history, global_step=self.outcome.global_step, rng=rng)
        self.clock.probe()  # closes the stretch: the eval row's time is measured, not extrapolated
        if not self._time_remaining():
            self.outcome.status = "budget_exhausted"
            return
        self._evaluate()

    def _evaluate(self) -> None:
        step = self.outcome.global_step
        rng = rnglib.fold_in(self.step_rng, -1 - step)
        with self.clock.phase("eval"), torch.no_grad(), rnglib.isolated_streams(rng, self.workload.device):
            results = self.workload.eval_model(self.workload.eval_batch_size, self.params, self.model_state, rng, step)
        row = self._eval_row(results)
        with self.clock.phase("logging"):
            self.on_eval(row)
        self.outcome.evals.append(row)
        self.eval_history.append((step, results))
        self._state["last_eval_results"] = results
        self._state["last_eval_time"] = row["total_duration"]
        self._judge(row)
        self.last_eval_end = self.clock.now()

    def _eval_row(self, results: EvalResults) -> EvalResults:
        totals = self.clock.totals
        return {
            "global_step": self.outcome.global_step,
            "examples_seen": self.outcome.examples_seen,
            "accumulated_submission_time": self.clock.submission_time,
            "accumulated_raw_submission_time": totals["submission"],
            "accumulated_eval_time": totals["eval"],
            "accumulated_logging_time": totals["logging"],
            "total_duration": self.clock.since(self.clock.started),
            **results,
        }

    def _judge(self, row: EvalResults) -> None:
        """Record targets met at this eval and decide whether the run ends here."""
        for split, reached in (("validation", self.workload.has_reached_validation_target), ("test", self.workload.has_reached_test_target)):
            if self.outcome.time_to_target[split] is None and reached(row):
                self.outcome.time_to_target[split] = row["accumulated_submission_time"]
                self.outcome.raw_time_to_target[split] = row["accumulated_raw_submission_time"]
                self.outcome.steps_to_target[split] = int(row["global_step"])
                self.outcome.examples_to_target[split] = int(row["examples_seen"])
                self._state[f"{split}_goal_reached"] = True
        if not all(math.isfinite(row.get(f"{split}/loss", 0.0)) for split in ("train", "validation")):
            self.outcome.status = "diverged"
        elif self._state["validation_goal_reached"] and self.settings.stop_at_target:
            self.outcome.status = "reached"
        elif self._state["training_complete"]:
            self.outcome.status = "complete"


def _pack(value: object) -> dict[str, object]:
    """One optimizer-state value in a form that `weights_only` loading accepts."""
    if hasattr(value, "state_dict") and hasattr(value, "load_state_dict"):
        return {"state_dict": value.state_dict()}
    if isinstance(value, collections.deque):  # e.g. the recent batches of schedule_free_adamw
        return {"deque": list(value), "maxlen": value.maxlen}
    return {"value": value}
