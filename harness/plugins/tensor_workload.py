"""The shared base of workloads whose data fits in memory as tensors on the device.

A concrete workload (one file in `workloads/`) supplies `make_splits` (the data, fixed by the
dataset seed), `build_model` and, where it is not classification accuracy, `metric_sums` and
`target_bounds`. This base supplies everything else in `harness.core.spec.Workload`: seeded init,
train/eval modes and BatchNorm handling, masked losses, the training stream, the evaluation
loop, the target sanity check and the on-disk cache of generated data.

Data cache: generated splits are saved under `data_dir` (default `$PACER_DATA_DIR`, else
`~/.cache/pacer/data`) in a file named by the workload class, its `data_version`, the
dataset seed and a hash of `data_settings()`; a later run loads the file instead of
generating again. Bump `data_version` whenever the generator's output changes. Workloads that
read a local copy of downloaded files set `cache_splits = False`: they read `data_dir` as it
is, which then need not be writable."""

from __future__ import annotations

import abc
import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from harness.core import rng as rnglib
from harness.core.checkpoint import torch_save_atomically
from harness.core.checks import check_choice, finite_number, seconds, whole_number
from harness.core.spec import (
    Batch,
    EvalResults,
    ForwardPassMode,
    InputQueue,
    LossOutput,
    LossType,
    MetricDirection,
    ModelAuxiliaryState,
    ParameterContainer,
    ParameterType,
    Rng,
    Tensor,
    Workload,
    parameter_type,
)

DATA_DIR_ENV = "PACER_DATA_DIR"
CLOCKS = ("wall", "normalized")
REFERENCE_MODEL_SEED = 0
DEFAULT_DATA_DIR = Path("~/.cache/pacer/data")


@dataclass(frozen=True)
class Split:
    inputs: Tensor
    targets: Tensor
    weights: Tensor | None = None
    """Optional per-target weights (same shape as `targets`): 1 for real targets, 0 for
    padding; sequence workloads weight tokens this way."""

    def __len__(self) -> int:
        return len(self.inputs)

    def to(self, device: torch.device) -> Split:
        return Split(self.inputs.to(device), self.targets.to(device), None if self.weights is None else self.weights.to(device))

    def select(self, index: Tensor | slice) -> Batch:
        """The examples at `index` as a batch (with `weights` where the split has them)."""
        batch = {"inputs": self.inputs[index], "targets": self.targets[index]}
        if self.weights is not None:
            batch["weights"] = self.weights[index]
        return batch


@dataclass(frozen=True)
class Splits:
    train: Split
    validation: Split
    test: Split
    eval_train_size: int
    """The fixed train subset evaluated as `train/...`: the first examples of `train`."""


class TensorInputQueue(InputQueue):
    """Endless shuffled passes over a training split; each epoch's order is derived from the
    data seed and the epoch number, so the position is just (epoch, offset)."""

    def __init__(self, split: Split, batch_size: int, rng: Rng):
        self.split, self.batch_size, self.rng = split, batch_size, rng
        self.epoch, self.offset = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> Tensor:
        order = torch.randperm(len(self.split), generator=rnglib.generator(rnglib.fold_in(self.rng, epoch)))
        return order.to(self.split.inputs.device)

    def take(self, n: int) -> Batch:
        parts = []
        while n > 0:
            if self.offset == len(self.split):
                self.epoch, self.offset = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            chunk = self._order[self.offset:self.offset + n]
            self.offset += len(chunk)
            n -= len(chunk)
            parts.append(chunk)
        index = parts[0] if len(parts) == 1 else torch.cat(parts)
        return self.split.select(index)

    def __next__(self) -> Batch:
        return self.take(self.batch_size)

    def state_dict(self) -> dict[str, object]:
        return {"epoch": self.epoch, "offset": self.offset}

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        self.epoch, self.offset = int(state["epoch"]), int(state["offset"])
        self._order = self._permutation(self.epoch)


class BuiltModelParameters:
    """`param_shapes` and `model_params_types` of the model that `init_model_fn` stored in
    `self._model`; shared by the in-memory and the DataLoader workload bases."""

    name: str
    _model: nn.Module | None

    @property
    def param_shapes(self) -> dict[str, torch.Size]:
        return {name: p.shape for name, p in self._built_model().named_parameters()}

    @property
    def model_params_types(self) -> dict[str, ParameterType]:
        model = self._built_model()
        return {name: parameter_type(model, name) for name, _ in model.named_parameters()}

    def _built_model(self) -> nn.Module:
        if self._model is None:
            raise RuntimeError(f"{self.name}: call init_model_fn before reading parameter shapes or types")
        return self._model


class TensorWorkload(BuiltModelParameters, Workload):
    """Base for in-memory workloads. Keyword arguments are the keys of the workload's config."""

    loss_kind: LossType = LossType.SOFTMAX_CROSS_ENTROPY

    def __init__(
        self,
        *,
        name: str,
        validation_target: float,
        test_target: float,
        max_runtime_sec: float,
        eval_period_sec: float,
        step_hint: int,
        batch_size: int,
        eval_batch_size: int = 1024,
        dataset_seed: int = 0,
        device: str = "cpu",
        data_dir: str | None = None,
        base_name: str | None = None,
        variant: str | None = None,
        clock: str = "wall",
        reference: Mapping[str, object] | None = None,
        eval_every_steps: int | None = None,
    ):
        self.name, self.base_name, self.variant = name, base_name or name, variant
        self.clock, self.reference_step_sec, self.eval_every_steps = check_clock(clock, reference, eval_every_steps)
        self.validation_target_value, self.test_target_value = finite_number("validation_target", validation_target), finite_number("test_target", test_target)
        self.max_allowed_runtime_sec, self.eval_period_time_sec = seconds("max_runtime_sec", max_runtime_sec), seconds("eval_period_sec", eval_period_sec, zero_ok=True)
        self.step_hint, self.reference_batch_size = whole_number("step_hint", step_hint), whole_number("batch_size", batch_size)
        self.eval_batch_size, self.dataset_seed = whole_number("eval_batch_size", eval_batch_size), whole_number("dataset_seed", dataset_seed, minimum=0)
        self.device = torch.device(device)
        self.data_dir = data_dir_path(data_dir)
        if self.cache_splits:
            check_writable(self.data_dir)
        self._splits: Splits | None = None
        self._model: nn.Module | None = None

    # --- what a concrete workload provides -------------------------------------------

    @abc.abstractmethod
    def make_splits(self, dataset_seed: int) -> Splits:
        """Generate or load the data on the CPU; must depend only on `dataset_seed`."""

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised model (the global torch RNG is seeded by the caller)."""

    data_name: str | None = None
    """Name of the generated data in the cache (default: the class name); workloads that share
    data (e.g. two models on MNIST-1D) share it."""
    data_version: str = "1"
    """Version of the data generator; part of the cache key."""
    cache_splits: bool = True
    """Keep generated splits in `data_dir` (which must then be writable); False for workloads
    whose `make_splits` reads files that are as fast to read as the cache."""

    def data_settings(self) -> dict[str, object]:
        """The settings besides the dataset seed that change the generated data (cache key)."""
        return {}

    def metric_sums(self, logits: Tensor, targets: Tensor, weights: Tensor | None = None) -> dict[str, Tensor]:
        """Per-batch sums of each metric (divided by `eval_weight` afterwards)."""
        correct = logits.argmax(-1) == targets
        return {"accuracy": (correct if weights is None else correct * weights).sum()}

    def eval_weight(self, targets: Tensor, weights: Tensor | None = None) -> float:
        """What metric sums are divided by: examples, or the weight sum (tokens) where weighted."""
        return float(len(targets)) if weights is None else float(weights.sum())

    def target_bounds(self) -> tuple[float, float]:
        """The range a target of the metric can lie in (accuracy: [0, 1]). A loss-like metric
        returns (its optimal value, inf): a target below the optimum can never be reached."""
        return (0.0, 1.0)

    def check_targets(self) -> None:
        """Raise ValueError for a target outside `target_bounds` (e.g. the wrong direction)."""
        low, high = self.target_bounds()
        for split, value in (("validation", self.validation_target_value), ("test", self.test_target_value)):
            if not (math.isfinite(value) and low <= value <= high):
                better = "higher" if self.target_metric_direction is MetricDirection.MAXIMIZE else "lower"
                raise ValueError(
                    f"{split} target {value:g} of {self.target_metric_name} ({better} is better) is outside its possible range "
                    f"[{low:.6g}, {high:.6g}]")

    # --- data ---------------------------------------------------------------------------

    @property
    def splits(self) -> Splits:
        if self._splits is None:
            splits = self._cached_splits() if self.cache_splits else self.make_splits(self.dataset_seed)
            self._splits = Splits(splits.train.to(self.device), splits.validation.to(self.device), splits.test.to(self.device), splits.eval_train_size)
        return self._splits

    def data_cache_path(self) -> Path:
        """Where the generated splits of this data version, seed and settings are kept."""
        key = json.dumps({"version": self.data_version, "seed": self.dataset_seed, **self.data_settings()}, sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return self.data_dir / f"{self.data_name or type(self).__name__.lower()}-v{self.data_version}-seed{self.dataset_seed}-{digest}.pt"

    def _cached_splits(self) -> Splits:
        path = self.data_cache_path()
        if path.exists():
            saved = torch.load(path, weights_only=True)
            return Splits(*(Split(**saved[name]) for name in ("train", "validation", "test")), saved["eval_train_size"])
        splits = self.make_splits(self.dataset_seed)
        try:
            torch_save_atomically(asdict(splits), path, durable=False)  # concurrent runs never read a half-written file
        except OSError as e:
            warnings.warn(f"cannot keep the generated data in {path} ({e.strerror or e}): the next run generates it again", stacklevel=2)
        return splits

    @property
    def num_train_examples(self) -> int:
        return len(self.splits.train)

    @property
    def num_eval_train_examples(self) -> int:
        return self.splits.eval_train_size

    @property
    def num_validation_examples(self) -> int:
        return len(self.splits.validation)

    @property
    def num_test_examples(self) -> int:
        return len(self.splits.test)

    def build_input_queue(self, data_rng: Rng, global_batch_size: int) -> TensorInputQueue:
        return TensorInputQueue(self.splits.train, global_batch_size, data_rng)

    # --- model --------------------------------------------------------------------------

    def init_model_fn(self, rng: Rng, dropout_rate: float | None = None) -> tuple[ParameterContainer, ModelAuxiliaryState]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(rng)
            model = self.build_model()
        self._model = model.to(self.device)
        if dropout_rate is not None:
            set_dropout(self._model, dropout_rate)
        return self._model, None

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
        training = mode is ForwardPassMode.TRAIN
        if params.training != training:
            params.train(training)
        if dropout_rate is not None:
            set_dropout(params, dropout_rate)
        inputs = augmented_and_preprocessed_input_batch["inputs"]
        if mode is ForwardPassMode.TRAIN and not update_batch_norm:
            with frozen_batch_norm_statistics(params):
                return params(inputs), model_state
        return params(inputs), model_state

    @property
    def loss_type(self) -> LossType:
        return self.loss_kind

    def loss_fn(self, label_batch: Tensor, logits_batch: Tensor, mask_batch: Tensor | None = None, label_smoothing: float = 0.0) -> LossOutput:
        if self.loss_kind is LossType.SOFTMAX_CROSS_ENTROPY:
            per_example = F.cross_entropy(logits_batch.flatten(0, -2), label_batch.flatten(), reduction="none", label_smoothing=label_smoothing).view(label_batch.shape)
        elif self.loss_kind is LossType.MEAN_SQUARED_ERROR:
            per_example = (logits_batch - label_batch).square().flatten(1).mean(1)
        elif self.loss_kind is LossType.SIGMOID_CROSS_ENTROPY:
            per_example = F.binary_cross_entropy_with_logits(logits_batch, label_batch.to(logits_batch.dtype), reduction="none").flatten(1).mean(1)
        else:
            raise NotImplementedError(f"{self.name}: loss type {self.loss_kind}")
        if mask_batch is not None:
            per_example = per_example * mask_batch
            n_valid = mask_batch.sum()
        else:
            n_valid = torch.tensor(float(per_example.numel()), device=per_example.device)
        return {"summed": per_example.sum(), "n_valid_examples": n_valid, "per_example": per_example}

    def reference_computation(self) -> Callable[[], None]:
        """Forward and backward of a separate model (built from a fixed seed, eval mode: no
        dropout draws, BatchNorm statistics untouched) on the first `batch_size` validation
        examples; gradients are returned by `torch.autograd.grad`, never stored on parameters.
        It shares no tensor, random stream or state with the run."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(REFERENCE_MODEL_SEED)
            model = self.build_model().to(self.device).eval()
        params = [p for p in model.parameters() if p.requires_grad]
        batch = self.splits.validation.select(slice(0, self.reference_batch_size))

        def compute() -> None:
            logits = model(batch["inputs"])
            loss = self.loss_fn(batch["targets"], logits, batch.get("weights"))["summed"]
            torch.autograd.grad(loss, params)

        return compute

    # --- evaluation ---------------------------------------------------------------------

    def eval_model(self, global_batch_size: int, params: ParameterContainer, model_state: ModelAuxiliaryState, rng: Rng, global_step: int) -> EvalResults:
        splits = self.splits
        n = splits.eval_train_size
        eval_train = Split(splits.train.inputs[:n], splits.train.targets[:n], None if splits.train.weights is None else splits.train.weights[:n])
        results: EvalResults = {}
        for split_name, split in (("train", eval_train), ("validation", splits.validation), ("test", splits.test)):
            for metric, value in self._evaluate_split(params, model_state, split, global_batch_size).items():
                results[f"{split_name}/{metric}"] = value
        return results

    def _evaluate_split(self, params: ParameterContainer, model_state: ModelAuxiliaryState, split: Split, batch_size: int) -> dict[str, float]:
        sums: dict[str, Tensor] = {}
        weight = 0.0
        with torch.no_grad():
            for start in range(0, len(split), batch_size):
                batch = split.select(slice(start, start + batch_size))
                targets, weights = batch["targets"], batch.get("weights")
                logits, _ = self.model_fn(params, batch, model_state, ForwardPassMode.EVAL, 0, update_batch_norm=False)
                weight += self.eval_weight(targets, weights)
                batch_sums = {"loss": self.loss_fn(targets, logits, weights)["summed"], **self.metric_sums(logits, targets, weights)}
                for key, value in batch_sums.items():
                    sums[key] = sums.get(key, 0) + value.double()
        return {key: float(value) / weight for key, value in sums.items()} | {"num_examples": float(len(split))}


def check_clock(clock: str, reference: Mapping[str, object] | None, eval_every_steps: int | None) -> tuple[str, float | None, int | None]:
    """(clock, reference seconds on the calibration host, eval period in steps) from a
    workload config's `clock`, `reference` and `eval_every_steps`; ValueError if they do not
    fit together. `reference: {step_sec: null}` is a calibration run's (it measures it)."""
    check_choice("clock", clock, CLOCKS)
    if eval_every_steps is not None and (isinstance(eval_every_steps, bool) or not isinstance(eval_every_steps, int) or eval_every_steps < 1):
        raise ValueError(f"eval_every_steps {eval_every_steps!r} must be an integer >= 1")
    if clock == "wall":
        return clock, None, eval_every_steps
    if not isinstance(reference, Mapping) or "step_sec" not in reference:
        raise ValueError("clock normalized needs `reference.step_sec` (the reference computation's seconds on the calibration host): run `pacer calibrate`")
    step_sec = reference["step_sec"]
    if step_sec is not None and (isinstance(step_sec, bool) or not isinstance(step_sec, (int, float)) or not 0 < step_sec < math.inf):
        raise ValueError(f"reference.step_sec {step_sec!r} must be a positive number of seconds")
    if eval_every_steps is None:
        raise ValueError("clock normalized needs `eval_every_steps`: its evals fall on steps, so that the eval sequence does not depend on the machine")
    return clock, None if step_sec is None else float(step_sec), eval_every_steps








def data_dir_path(data_dir: str | None) -> Path:
    """The data folder: `data_dir`, else `$PACER_DATA_DIR`, else `~/.cache/pacer/data`."""
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).expanduser()


def check_writable(path: Path) -> None:
    """Create the folder `path` if needed; ValueError (one line) if it cannot be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"data_dir {path} cannot be created ({e.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"data_dir {path} is not writable") from None


def set_dropout(model: nn.Module, rate: float) -> None:
    # model_fn calls this every step; walk the modules only when the rate changes.
    if getattr(model, "_pacer_dropout_rate", None) == rate:
        return
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = rate
    model._pacer_dropout_rate = rate


class frozen_batch_norm_statistics:
    """Train-mode forward that uses batch statistics but leaves running statistics alone."""

    def __init__(self, model: nn.Module):
        self.norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def __enter__(self) -> None:
        self.saved = [m.momentum for m in self.norms]
        for m in self.norms:
            m.momentum = 0.0

    def __exit__(self, *exc: object) -> None:
        for m, momentum in zip(self.norms, self.saved, strict=True):
            m.momentum = momentum
