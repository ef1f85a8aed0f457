"""The Pacer contract: what a workload provides, what a submission provides, and what is timed.

Read this module to learn the whole contract. Names and argument order follow MLCommons
AlgoPerf (`algoperf/spec.py`) on purpose: an AlgoPerf PyTorch submission file runs unmodified
(`pacer run submission=path/to/submission.py`; its `algoperf` imports are served by
`harness.plugins.algoperf_api`), and a Pacer submission may import `harness.core.spec` instead.

Calls, as AlgoPerf makes them: `get_batch_size`, `init_optimizer_state` and `data_selection`
positionally; `update_params` and `prepare_for_eval` by keyword, each given only the
arguments its signature names (so `train_state` is optional).

Timing (enforced by `harness.core.runner`, never by the submission):

* untimed: building the data, `Workload.init_model_fn`, `Submission.init_optimizer_state`,
  checkpoint save and restore;
* timed, the "accumulated submission time": every `data_selection` + `update_params`,
  and `prepare_for_eval`;
* untimed: `Workload.eval_model`, logging, checkpointing.

Where PyTorch allows something simpler than AlgoPerf's JAX-first types, Pacer takes it:
the parameter container is the `torch.nn.Module` itself (AlgoPerf PyTorch does the same),
and an rng is a plain 64-bit integer seed (see `harness.core.rng`).
"""

from __future__ import annotations

import abc
import enum
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from typing import NotRequired, Protocol, TypedDict, runtime_checkable

import torch
from torch import nn

Tensor = torch.Tensor
ParameterContainer = nn.Module
"""The model itself. Submissions read and update its parameters in place or return a new one."""
ModelAuxiliaryState = dict[str, Tensor] | None
"""Non-parameter model state (e.g. BatchNorm running statistics live in the module; most
workloads return None here, as in AlgoPerf PyTorch)."""
BatchPart = Tensor | tuple[Tensor, Tensor] | Sized
"""One entry of a batch: a tensor whose leading dimension is the example, AlgoPerf's
(values, paddings) pair of such tensors (the speech workloads), or a workload's own batch object
whose `len()` is its number of examples (ogbg's `Graphs`)."""


class Batch(TypedDict):
    """A batch: `inputs`, `targets` and optionally `weights` (1 for real examples, 0 for padding),
    all holding the same examples."""

    inputs: BatchPart
    targets: BatchPart
    weights: NotRequired[Tensor]


Rng = int
"""A 64-bit seed. Derive children with `harness.core.rng.split` / `harness.core.rng.fold_in`."""
OptimizerState = dict[str, object]
"""Whatever the submission keeps between steps. Values with `state_dict`/`load_state_dict`
(optimizers, LR schedulers) are checkpointed through those methods, the others as they are (a
deque as its items). Either may hold only tensors, plain values (numbers, strings, None, lists,
tuples, dicts) and instances of the classes the submission's config lists under
`checkpoint_classes`: a checkpoint is read back with `weights_only=True`."""
EvalResults = dict[str, float]
"""Flat metrics, e.g. {"train/loss": .., "validation/accuracy": .., "test/num_examples": ..}."""


class ForwardPassMode(enum.Enum):
    TRAIN = "train"
    EVAL = "eval"


class LossType(enum.Enum):
    SOFTMAX_CROSS_ENTROPY = 0
    SIGMOID_CROSS_ENTROPY = 1
    MEAN_SQUARED_ERROR = 2
    CTC_LOSS = 3
    MEAN_ABSOLUTE_ERROR = 4


class MetricDirection(enum.Enum):
    """Whether a larger (accuracy-like) or smaller (loss/error-like) metric is better."""

    MAXIMIZE = "max"
    MINIMIZE = "min"

    def reached(self, value: float, target: float) -> bool:
        """True when `value` meets `target` (>= for MAXIMIZE, <= for MINIMIZE)."""
        return value >= target if self is MetricDirection.MAXIMIZE else value <= target

    def best(self, values: Iterable[float]) -> float | None:
        """The best of the finite `values`; None when there is none."""
        finite = [v for v in values if math.isfinite(v)]
        if not finite:
            return None
        return max(finite) if self is MetricDirection.MAXIMIZE else min(finite)


class ParameterType(enum.Enum):
    """What a parameter is, so that submissions may treat kinds differently (e.g. no weight
    decay on norms and biases) without identifying the workload."""

    WEIGHT = 0
    BIAS = 1
    CONV_WEIGHT = 2
    BATCH_NORM_SCALE = 3
    BATCH_NORM_BIAS = 4
    LAYER_NORM_SCALE = 5
    LAYER_NORM_BIAS = 6
    EMBEDDING = 7
    ATTENTION_Q = 8
    ATTENTION_K = 9
    ATTENTION_V = 10
    ATTENTION_OUT = 11
    ATTENTION_QKV = 12
    ATTENTION_KV = 13
    ATTENTION_BIAS = 14


class TrainingCompleteError(Exception):
    """Raised by a submission (from `update_params` or `data_selection`) to end training.

    The runner then runs `prepare_for_eval` and one final evaluation, and records the run
    as `complete` (or `reached` if that evaluation meets the target)."""


TrainingComplete = TrainingCompleteError


class LossOutput(TypedDict):
    """What `Workload.loss_fn` returns."""

    summed: Tensor
    """Sum of the per-example losses over valid (unmasked) examples: a scalar."""
    n_valid_examples: Tensor
    """Number of valid examples (sum of the mask): a scalar."""
    per_example: Tensor
    """Loss of each example, 0 where masked."""


class TrainState(TypedDict):
    """Read-only view of the run handed to `update_params` (as a `MappingProxyType`).

    The first keys are AlgoPerf's; the rest are Pacer's."""

    accumulated_submission_time: float
    accumulated_eval_time: float
    accumulated_logging_time: float
    is_time_remaining: bool
    validation_goal_reached: bool
    test_goal_reached: bool
    training_complete: bool
    last_eval_time: float
    global_step: int
    examples_seen: int
    last_eval_results: EvalResults


class InputQueue(Iterator[Batch], abc.ABC):
    """The training stream that `data_selection` reads; it never yields validation or test data.

    `next(queue)` gives a batch of the submission's `get_batch_size`. `take(n)` gives a batch of
    exactly `n` examples continuing the same stream, for adaptive batch-size methods.
    The position is checkpointable through `state_dict`/`load_state_dict`."""

    @abc.abstractmethod
    def take(self, n: int) -> Batch:
        """The next `n` examples of the stream as one batch."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, object]:
        """Everything needed to continue the stream exactly where it is."""

    @abc.abstractmethod
    def load_state_dict(self, state: Mapping[str, object]) -> None:
        """Continue from a `state_dict`."""


class Workload(abc.ABC):
    """Model + data + loss + metric + target + budget.

    Targets and budgets come from the workload's config (`configs/workload/<name>.yaml`),
    which `pacer calibrate` writes; the metric and its direction are fixed by the code.
    Submissions may read `param_shapes`, `model_params_types` and `loss_type`, but must not
    identify the workload to special-case it."""

    name: str
    base_name: str
    """The base workload's name: `name` itself, or for a held-out variant (`name` is
    `<base>_<variant>`) the workload it varies, whose name submissions size themselves by."""
    variant: str | None = None
    """The held-out variant's name (e.g. "gelu"); None for a base workload."""
    multi_device: bool = False
    """Whether the workload trains on several devices of one run (DDP, `devices=N`)."""
    optimal_loss: float | None = None
    """The best achievable loss where the data's generator knows it (synthetic workloads), or None."""
    target_metric_name: str
    """Key of the metric, without split prefix (e.g. "accuracy")."""
    target_metric_direction: MetricDirection
    validation_target_value: float
    test_target_value: float | None
    """None: the workload has no test split (AlgoPerf's finewebedu_lm), so no test target is ever reached."""
    max_allowed_runtime_sec: float
    """The budget, in the workload's clock (`clock`): wall seconds or reference seconds."""
    eval_period_time_sec: float
    step_hint: int
    """Steps the target-setting runs needed; schedules (e.g. cosine decay) may use it."""
    clock: str = "wall"
    """`wall` (AlgoPerf's rule: wall seconds of the submission) or `normalized` (reference
    seconds: seconds on the calibration host, see `harness.core.timer`)."""
    reference_step_sec: float | None = None
    """Normalized clock: `reference_computation`'s seconds on the calibration host (None
    during a calibration run, which measures it)."""
    eval_every_steps: int | None = None
    """Evaluate after step 1 and every this many steps, so that the eval sequence does not
    depend on the machine's speed; None: AlgoPerf's wall-clock `eval_period_time_sec`."""
    metrics_logger: object | None = None
    """AlgoPerf's optional logger of extra training scalars, which submissions test for
    `is not None` before calling `append_scalar_metrics`; Pacer provides none."""
    reference_batch_size: int
    """The batch size the targets were set with (the config's `batch_size`)."""
    eval_batch_size: int
    num_train_examples: int
    num_eval_train_examples: int
    num_validation_examples: int
    num_test_examples: int
    device: torch.device

    @property
    @abc.abstractmethod
    def loss_type(self) -> LossType: ...

    @property
    @abc.abstractmethod
    def param_shapes(self) -> dict[str, torch.Size]:
        """Shape of every parameter, by its name in the model (valid after `init_model_fn`)."""

    @property
    @abc.abstractmethod
    def model_params_types(self) -> dict[str, ParameterType]:
        """Kind of every parameter, by its name in the model (valid after `init_model_fn`)."""

    @abc.abstractmethod
    def init_model_fn(self, rng: Rng, dropout_rate: float | None = None) -> tuple[ParameterContainer, ModelAuxiliaryState]:
        """Build the model with parameters initialised from `rng` (untimed)."""

    @abc.abstractmethod
    def model_fn(
        self,
        params: ParameterContainer,
        augmented_and_preprocessed_input_batch: Batch,
        model_state: ModelAuxiliaryState,
        mode: ForwardPassMode,
        rng: Rng,
        update_batch_norm: bool,
        dropout_rate: float | None = None,
    ) -> tuple[Tensor, ModelAuxiliaryState]:
        """Forward pass. Returns logits and the new model state.

        `mode` selects train/eval behaviour (dropout, BatchNorm batch statistics);
        `update_batch_norm` says whether BatchNorm running statistics may change."""

    @abc.abstractmethod
    def loss_fn(
        self,
        label_batch: Tensor,
        logits_batch: Tensor,
        mask_batch: Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> LossOutput:
        """Per-example loss, its masked sum and the number of valid examples."""

    @abc.abstractmethod
    def build_input_queue(self, data_rng: Rng, global_batch_size: int) -> InputQueue:
        """The training stream, shuffled by `data_rng`."""

    @abc.abstractmethod
    def eval_model(
        self,
        global_batch_size: int,
        params: ParameterContainer,
        model_state: ModelAuxiliaryState,
        rng: Rng,
        global_step: int,
    ) -> EvalResults:
        """Evaluate on the fixed train subset, validation and test splits (untimed).

        Returns `<split>/<metric>` for every metric, `<split>/loss`, and
        `<split>/num_examples`, split in {train, validation, test}."""

    @property
    def run_options(self) -> dict[str, object]:
        """Options that change what is timed (e.g. precision, compilation), recorded in the
        run record and in the hardware/software fingerprint so that scoring never compares
        across them; none by default."""
        return {}

    def check_targets(self) -> None:
        """Raise ValueError when a configured target cannot be reached on this data (e.g. a loss
        below its optimum); called when the workload is built. Nothing to check by default."""
        return

    def reference_computation(self) -> Callable[[], None]:
        """The normalized clock's yardstick (untimed, after `init_model_fn`): a function that
        runs a fixed computation shaped like a training step (e.g. forward and backward of a
        separate copy of the model on a fixed batch). It must not touch the training state:
        parameters, optimizer state, data stream or random streams."""
        raise NotImplementedError(f"workload {self.name} has no reference computation for the normalized clock")

    def has_reached_validation_target(self, eval_result: Mapping[str, float]) -> bool:
        value = eval_result[f"validation/{self.target_metric_name}"]
        return self.target_metric_direction.reached(value, self.validation_target_value)

    def has_reached_test_target(self, eval_result: Mapping[str, float]) -> bool:
        if self.test_target_value is None:
            return False
        value = eval_result[f"test/{self.target_metric_name}"]
        return self.target_metric_direction.reached(value, self.test_target_value)


@runtime_checkable
class Submission(Protocol):
    """A training algorithm. A Python module with these functions satisfies it (AlgoPerf's
    layout), and so does the adapter built from a config-only YAML submission.

    A submission must not read validation or test data, change parameters in
    `data_selection`, or identify the workload by name other than in `get_batch_size`."""

    def get_batch_size(self, workload_name: str) -> int:
        """Global batch size for a workload, asked by its base name (untimed). A submission that
        raises `ValueError`, `KeyError` or `NotImplementedError` (a name it does not know) gets
        the workload's reference batch size, and the run record says so in `warnings`."""

    def init_optimizer_state(
        self,
        workload: Workload,
        model_params: ParameterContainer,
        model_state: ModelAuxiliaryState,
        hyperparameters: Hyperparameters,
        rng: Rng,
    ) -> OptimizerState:
        """Create optimizer state (untimed)."""

    def update_params(
        self,
        workload: Workload,
        current_param_container: ParameterContainer,
        current_params_types: dict[str, ParameterType],
        model_state: ModelAuxiliaryState,
        hyperparameters: Hyperparameters,
        batch: Batch,
        loss_type: LossType,
        optimizer_state: OptimizerState,
        eval_results: list[tuple[int, EvalResults]],
        global_step: int,
        rng: Rng,
        train_state: Mapping[str, object] | None = None,
    ) -> tuple[OptimizerState, ParameterContainer, ModelAuxiliaryState]:
        """One training step (timed). May raise `TrainingCompleteError`."""

    def data_selection(
        self,
        workload: Workload,
        input_queue: InputQueue,
        optimizer_state: OptimizerState,
        current_param_container: ParameterContainer,
        model_state: ModelAuxiliaryState,
        hyperparameters: Hyperparameters,
        global_step: int,
        rng: Rng,
    ) -> Batch:
        """Choose the next batch (timed). Any batch size is allowed (adaptive methods)."""


class PrepareForEval(Protocol):
    """Optional submission function, timed: e.g. swap in averaged weights before an eval.

    The runner calls it before every evaluation; the submission undoes the swap at its next
    `update_params`."""

    def __call__(
        self,
        workload: Workload,
        current_param_container: ParameterContainer,
        current_params_types: dict[str, ParameterType],
        model_state: ModelAuxiliaryState,
        hyperparameters: Hyperparameters,
        loss_type: LossType,
        optimizer_state: OptimizerState,
        eval_results: list[tuple[int, EvalResults]],
        global_step: int,
        rng: Rng,
    ) -> tuple[OptimizerState, ParameterContainer, ModelAuxiliaryState]: ...


class Hyperparameters(Mapping[str, float | int | str | bool]):
    """A point of a search space, read-only, readable as attributes (AlgoPerf style:
    `hyperparameters.learning_rate`) or as a mapping."""

    _values: dict[str, float | int | str | bool]

    def __init__(self, values: Mapping[str, float | int | str | bool]):
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> float | int | str | bool:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no hyperparameter {name!r} (have: {', '.join(sorted(self._values)) or 'none'})") from None

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("hyperparameters are read-only")

    def __getitem__(self, name: str) -> float | int | str | bool:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Hyperparameters({self._values!r})"

    def __reduce__(self):
        return (Hyperparameters, (self._values,))


def parameter_type(model: nn.Module, param_name: str) -> ParameterType:
    """Infer a parameter's kind from the module that owns it. Workloads may override
    `model_params_types` where this guess is not enough (e.g. attention projections)."""
    module_name, _, leaf = param_name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return ParameterType.BATCH_NORM_SCALE if leaf == "weight" else ParameterType.BATCH_NORM_BIAS
    if isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)):
        return ParameterType.LAYER_NORM_SCALE if leaf == "weight" else ParameterType.LAYER_NORM_BIAS
    if isinstance(module, nn.Embedding):
        return ParameterType.EMBEDDING
    if leaf == "bias" or leaf.endswith("_bias"):
        return ParameterType.BIAS
    if isinstance(module, nn.modules.conv._ConvNd):
        return ParameterType.CONV_WEIGHT
    return ParameterType.WEIGHT
