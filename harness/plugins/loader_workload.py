"""The shared base of workloads that stream their data from disk through DataLoaders.

A concrete workload supplies `check_data` (a cheap look at the data directory that raises
`PacerUserError` naming the expected layout), `make_datasets` (the four `SplitDatasets` of
examples, augmentation included; an example is a tuple or dict of host tensors and numbers),
`build_model`, `device_batch` (a collated host batch -> the model's `Batch` on the device),
`eval_batch` and `summarize` (the metrics), and may replace `collate`, `forward`,
`model_to_device`, `loss_fn` (with `loss_type`) and `augment_batch`.
`harness.plugins.image_workload.ImageClassifierWorkload` is the layer for image classifiers. This base supplies the rest of `harness.core.spec.Workload`:

* the training stream: DataLoader workers, pinned memory, persistent workers; every
  example's augmentation is seeded by its position in the stream, so the stream depends on
  the data seed alone (not on the number of workers or devices); a `take(n)` of other than
  the loader's batch reads and collates its examples in the training process;
* DDP: the global batch is split across ranks, the model is wrapped in
  `DistributedDataParallel`, evaluation is sharded;
* evaluation that counts every example exactly once: each rank's shard is padded to whole
  batches and the padding carries weight 0; per-batch weighted sums are all-reduced and the
  per-example outputs of the real examples are gathered, in dataset order, for metrics that
  are not sums (average precision, BLEU);
* the options `precision` (bf16 autocast, strict fp32 or TF32 matmuls) and `compile`.
"""

from __future__ import annotations

import abc
import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, default_collate

from harness.core import distributed
from harness.core import rng as rnglib
from harness.core.checks import check_choice, finite_number, flag, seconds, whole_number
from harness.core.spec import (
    Batch,
    EvalResults,
    ForwardPassMode,
    InputQueue,
    LossOutput,
    LossType,
    ModelAuxiliaryState,
    ParameterContainer,
    Rng,
    Tensor,
    Workload,
)
from harness.plugins.tensor_workload import BuiltModelParameters, frozen_batch_norm_statistics, set_dropout

PRECISIONS = ("bf16", "fp32", "tf32")
Example = tuple[object, ...] | Mapping[str, object]
"""One example as a dataset returns it: host tensors and numbers."""
HostBatch = tuple[object, ...] | Mapping[str, object]
"""Examples collated on the host (by `LoaderWorkload.collate`)."""


@dataclass(frozen=True)
class SplitDatasets:
    train: Dataset[Example]
    """Augmented training examples."""
    eval_train: Dataset[Example]
    """A fixed subset of the training set with the evaluation transform."""
    validation: Dataset[Example]
    test: Dataset[Example]


@dataclass
class BatchEval:
    """What `LoaderWorkload.eval_batch` returns for one evaluation batch of B examples."""

    sums: dict[str, Tensor] = field(default_factory=dict)
    """Scalars already weighted by `batch["weights"]` (padding has weight 0), e.g. summed
    loss: added over batches and all-reduced over ranks."""
    per_example: Sequence[object] = ()
    """Empty, or one picklable entry per example of the batch (B of them, padding included;
    the base drops the padding's): gathered over ranks for metrics that are not sums."""


class _Keyed(Dataset[Example]):
    """Reads the stream's `(index, seed)` keys. With `seeded`, torch's RNG (which
    torchvision's random transforms draw from) is seeded before each read, so an example's
    augmentation depends on its key alone; without, the reads skip that (a few hundred
    microseconds each) and a batch is read through the dataset's `__getitems__` when it has
    one (e.g. one vectorised read of memory-mapped arrays)."""

    def __init__(self, dataset: Dataset[Example], seeded: bool):
        self.dataset, self.seeded = dataset, seeded

    def __getitem__(self, key: Sequence[int]) -> Example:
        index, seed = int(key[0]), int(key[1])
        if not self.seeded:
            return self.dataset[index]
        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG alone (workers=0)
            torch.manual_seed(seed)
            return self.dataset[index]

    def __getitems__(self, keys: np.ndarray) -> list[Example]:
        """What DataLoader calls for a whole batch of keys (`ShardedStream.local_keys`)."""
        read_many = getattr(self.dataset, "__getitems__", None)  # torch's optional batched-read protocol
        if self.seeded or read_many is None:
            return [self[key] for key in keys]
        return read_many(keys[:, 0])


class EpochPermutation:
    """A seeded permutation of `range(size)`, evaluated per position: a 4-round Feistel network
    on the smallest even power of two >= size, walking each cycle back into range. Nothing
    epoch-sized is built (`torch.randperm` of Criteo's 4.2 billion examples would take 34 GB),
    and a batch of positions is mapped in one vectorised pass."""

    ROUNDS = 4

    def __init__(self, size: int, seed: Rng):
        bits = max(2, (size - 1).bit_length())
        self.size, self.half = size, (bits + 1) // 2
        self.mask = np.uint64((1 << self.half) - 1)
        self.keys = [np.uint64(rnglib.fold_in(seed, r) & ((1 << 64) - 1)) for r in range(self.ROUNDS)]

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        """int64 positions in [0, size) -> their images, int64 in [0, size)."""
        out = self._encrypt(positions.astype(np.uint64))
        outside = out >= self.size
        while outside.any():  # at most a few rounds: the domain is < 4 x size
            out[outside] = self._encrypt(out[outside])
            outside = out >= self.size
        return out.astype(np.int64)

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        shift = np.uint64(self.half)
        left, right = x >> shift, x & self.mask
        for key in self.keys:
            left, right = right, left ^ (_mix64(right ^ key) & self.mask)
        return (left << shift) | right


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class ShardedStream:
    """Batch sampler of an endless stream: epoch after epoch, each a permutation of the
    dataset derived from the seed (`EpochPermutation`). Global batch k is positions
    [k*G, (k+1)*G) of the stream; rank r gets the r-th of its `world` equal slices."""

    def __init__(self, size: int, seed: Rng, global_batch: int, rank: int, world: int, first_batch: int):
        self.size, self.seed, self.global_batch = size, seed, global_batch
        self.local = global_batch // world
        self.rank, self.first_batch = rank, first_batch
        self._epoch, self._order = -1, EpochPermutation(size, seed)

    def __iter__(self) -> Iterator[np.ndarray]:
        k = self.first_batch
        while True:
            yield self.local_keys(k * self.local, self.local)
            k += 1

    def local_keys(self, taken: int, n: int) -> np.ndarray:
        """The keys of this rank's examples number `taken` .. `taken + n - 1`: int64 (n, 2)
        rows `(index, seed)`, the seed being (stream seed + position) mod 2**63. An array,
        not a list of tuples: a 262,144-example batch's keys take 0.3 s to build as tuples."""
        batch, offset = np.divmod(np.arange(taken, taken + n, dtype=np.int64), self.local)
        positions = batch * self.global_batch + self.rank * self.local + offset
        epochs, within = np.divmod(positions, self.size)
        keys = np.empty((n, 2), dtype=np.int64)
        for epoch in np.unique(epochs):
            if epoch != self._epoch:
                self._epoch, self._order = int(epoch), EpochPermutation(self.size, rnglib.fold_in(self.seed, int(epoch)))
            in_epoch = epochs == epoch
            keys[in_epoch, 0] = self._order(within[in_epoch])
        low63 = np.uint64((1 << 63) - 1)
        keys[:, 1] = ((positions.astype(np.uint64) + np.uint64(self.seed % (1 << 63))) & low63).astype(np.int64)
        return keys


class LoaderInputQueue(InputQueue):
    """The training stream as device batches. Its position is the number of examples this
    rank has taken, so a restored queue continues exactly where it stopped."""

    def __init__(self, workload: LoaderWorkload, dataset: Dataset[Example], global_batch: int, rng: Rng):
        self.workload, self.dataset, self.global_batch, self.rng = workload, dataset, global_batch, rng
        self.world = distributed.world_size()
        self.local = _split_evenly(global_batch, self.world, "batch size")
        self.taken = 0
        self._restart()

    def _restart(self) -> None:
        self.stream = ShardedStream(len(self.dataset), self.rng, self.global_batch, distributed.rank(), self.world, 0)
        self.next_batch = math.ceil(self.taken / self.local)  # on this rank; a part-taken batch is read by `_read`
        stream = ShardedStream(len(self.dataset), self.rng, self.global_batch, distributed.rank(), self.world, self.next_batch)
        self.loader = self.workload.data_loader(_Keyed(self.dataset, self.workload.augments_examples), batch_sampler=stream, workers=self.workload.num_workers,
                                                collate_fn=self.workload.collate)
        self.batches = iter(self.loader)

    def take(self, n: int) -> Batch:
        """The next `n` examples of the global stream (`n / world` of them on this rank) as one
        device batch. A take of the loader's next whole batch comes from its workers; any
        other take reads its examples in this process and collates them with
        `workload.collate` (the same examples, since each is seeded by its position, but
        slower), and skips the loader batches it overlaps.

        Raises:
            ValueError: `n` is not divisible by the number of devices.
        """
        need = _split_evenly(n, self.world, "take(n)")
        if need == self.local and self.taken == self.next_batch * self.local:
            host = next(self.batches)
            self.next_batch += 1
        else:
            host = self._read(need)
        step = self.taken // self.local
        self.taken += need
        return self.workload.augment_batch(self.workload.device_batch(host), rnglib.fold_in(self.rng, -1 - step))

    def _read(self, need: int) -> HostBatch:
        """This rank's next `need` examples, read and collated in this process."""
        examples = _Keyed(self.dataset, self.workload.augments_examples).__getitems__(self.stream.local_keys(self.taken, need))
        while self.next_batch < math.ceil((self.taken + need) / self.local):
            next(self.batches)
            self.next_batch += 1
        return self.workload.collate(examples)

    def __next__(self) -> Batch:
        return self.take(self.global_batch)

    def state_dict(self) -> dict[str, object]:
        return {"taken": self.taken}

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        self.taken = int(state["taken"])
        self._restart()


class _EvalShard(Dataset[tuple[Example, float]]):
    """This rank's examples (rank, rank + world, ...) padded to whole batches, each with its
    weight; the padding repeats example 0 with weight 0, so every rank runs the same number
    of full batches."""

    def __init__(self, dataset: Dataset[Example], rank: int, world: int, batch: int):
        self.dataset, self.rank, self.world, self.size = dataset, rank, world, len(dataset)
        self.length = math.ceil(math.ceil(self.size / world) / batch) * batch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[Example, float]:
        index = self.rank + i * self.world
        if index < self.size:
            return self.dataset[index], 1.0
        return self.dataset[0], 0.0

    def __getitems__(self, positions: Sequence[int]) -> list[tuple[Example, float]]:
        """A batch of this shard, read through the dataset's `__getitems__` when it has one."""
        read_many = getattr(self.dataset, "__getitems__", None)  # torch's optional batched-read protocol
        if read_many is None:
            return [self[i] for i in positions]
        indices = [self.rank + i * self.world for i in positions]
        real = [index < self.size for index in indices]
        examples = read_many([index if inside else 0 for index, inside in zip(indices, real, strict=True)])
        return [(example, 1.0 if inside else 0.0) for example, inside in zip(examples, real, strict=True)]


class _WeightedCollate:
    """Collates `(example, weight)` pairs into `(host batch, float32 (B,) weights)`; a class,
    not a closure, so that DataLoader workers can receive it."""

    def __init__(self, collate: Callable[[list[Example]], HostBatch]):
        self.collate = collate

    def __call__(self, items: list[tuple[Example, float]]) -> tuple[HostBatch, Tensor]:
        examples, weights = zip(*items, strict=True)
        return self.collate(list(examples)), torch.tensor(weights, dtype=torch.float32)


def _in_dataset_order(per_rank: Sequence[Sequence[object]]) -> list[object]:
    """Per-rank outputs of examples (rank, rank + world, ...) -> one list in dataset order."""
    world, total = len(per_rank), sum(len(outputs) for outputs in per_rank)
    return [per_rank[j % world][j // world] for j in range(total)]


class LoaderWorkload(BuiltModelParameters, Workload):
    """Base for workloads fed by DataLoaders. Keyword arguments are the config's keys.

    The subclass declares `target_metric_name` (a key of `summarize`'s result) and
    `target_metric_direction`."""

    multi_device = True
    """Runs under DDP (`pacer run ... devices=N`)."""
    augments_examples = True
    """Whether reading a training example draws from torch's RNG (random augmentation). False
    skips seeding each read and lets the dataset's `__getitems__` read whole batches."""
    collate: Callable[[list[Example]], HostBatch] = staticmethod(default_collate)
    """Examples -> host batch. It runs in the DataLoader workers: a static method or another
    picklable callable, not a bound method."""

    def __init__(
        self,
        *,
        name: str,
        validation_target: float,
        test_target: float | None,
        max_runtime_sec: float,
        eval_period_sec: float,
        step_hint: int,
        batch_size: int,
        eval_batch_size: int,
        data_dir: str,
        eval_train_size: int,
        num_workers: int = 4,
        eval_num_workers: int = 4,
        precision: str = "fp32",
        compile: bool = False,
        dataset_seed: int = 0,
        device: str = "cpu",
        base_name: str | None = None,
        variant: str | None = None,
        rules: str | None = None,
    ):
        """`test_target` None: the workload has no test split. `rules`: the AlgoPerf version (e.g. "v1.0") whose targets, budget, eval period and
        step hint the config's `by_rules` table supplied; None for a workload without one."""
        self.name, self.base_name, self.variant, self.rules = name, base_name or name, variant, rules
        self.validation_target_value = finite_number("validation_target", validation_target)
        self.test_target_value = None if test_target is None else finite_number("test_target", test_target)
        self.max_allowed_runtime_sec, self.eval_period_time_sec = seconds("max_runtime_sec", max_runtime_sec), seconds("eval_period_sec", eval_period_sec, zero_ok=True)
        self.step_hint, self.reference_batch_size = whole_number("step_hint", step_hint), whole_number("batch_size", batch_size)
        self.eval_batch_size, self.dataset_seed = whole_number("eval_batch_size", eval_batch_size), whole_number("dataset_seed", dataset_seed, minimum=0)
        self.data_dir, self.eval_train_size = Path(data_dir).expanduser(), whole_number("eval_train_size", eval_train_size)
        self.num_workers, self.eval_num_workers = whole_number("num_workers", num_workers, minimum=0), whole_number("eval_num_workers", eval_num_workers, minimum=0)
        self.precision, self.compile = check_choice("precision", precision, PRECISIONS), flag("compile", compile)
        self.device = torch.device(device)
        self._datasets: SplitDatasets | None = None
        self._eval_loaders: dict[str, DataLoader] = {}
        self._model: nn.Module | None = None
        self.check_data()

    # --- what a concrete workload provides -------------------------------------------

    @abc.abstractmethod
    def check_data(self) -> None:
        """Cheaply check `data_dir`; raise `PacerUserError` naming the expected layout."""

    @abc.abstractmethod
    def make_datasets(self) -> SplitDatasets:
        """The four datasets; `eval_train` must not depend on anything but `dataset_seed`."""

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised model (the torch RNG is seeded by the caller)."""

    @abc.abstractmethod
    def device_batch(self, host_batch: HostBatch, weights: Tensor | None = None) -> Batch:
        """A collated host batch of B examples -> the model's batch on `self.device`, with
        `weights` (float32 (B,), 1 for real examples and 0 for evaluation padding) moved to
        `batch["weights"]` when given."""

    @abc.abstractmethod
    def eval_batch(self, params: ParameterContainer, model_state: ModelAuxiliaryState, batch: Batch) -> BatchEval:
        """One evaluation batch (from `device_batch`, with `weights`): weighted sums and/or
        per-example outputs. Called under `torch.no_grad()`."""

    @abc.abstractmethod
    def summarize(self, sums: Mapping[str, float], per_example: Sequence[object]) -> dict[str, float]:
        """A split's metrics from the `BatchEval.sums` added over all its examples (plus
        `num_examples`, the summed weights) and every real example's `per_example` output,
        in dataset order. The base adds `num_examples` to the result."""

    def forward(self, model: nn.Module, batch: Batch) -> Tensor:
        """The model's output (e.g. logits) for a device batch; `model(batch["inputs"])` by default."""
        return model(batch["inputs"])

    def model_to_device(self, model: nn.Module) -> nn.Module:
        """Move a freshly built model to `self.device` (e.g. in a memory format)."""
        return model.to(self.device)

    def augment_batch(self, batch: Batch, rng: Rng) -> Batch:
        """Batch-level augmentation on the device (e.g. mixup); none by default."""
        return batch

    def synthetic_batch(self, batch_size: int, seed: int = 0) -> Batch:
        """A training batch of `batch_size` examples on `self.device`, with the shapes and
        value ranges of real data but no data on disk (benchmarks/gpu_workloads.py times
        steps on these). Raises NotImplementedError for a workload that has none."""
        raise NotImplementedError(f"workload {self.name} has no synthetic batches")

    # --- options ------------------------------------------------------------------------

    @property
    def run_options(self) -> dict[str, object]:
        """Options that change what is timed: recorded in the run record and in the
        hardware/software fingerprint, so that scoring never compares across them."""
        options: dict[str, object] = {"precision": self.precision, "compile": self.compile, "world_size": distributed.world_size()}
        return options | ({"rules": self.rules} if self.rules else {})

    def _apply_precision(self) -> None:
        tf32 = self.precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32  # on by default in torch: off unless asked

    # --- data ---------------------------------------------------------------------------

    @property
    def datasets(self) -> SplitDatasets:
        if self._datasets is None:
            self._datasets = self.make_datasets()
        return self._datasets

    @property
    def num_train_examples(self) -> int:
        return len(self.datasets.train)

    @property
    def num_eval_train_examples(self) -> int:
        return len(self.datasets.eval_train)

    @property
    def num_validation_examples(self) -> int:
        return len(self.datasets.validation)

    @property
    def num_test_examples(self) -> int:
        return len(self.datasets.test)

    def data_loader(self, dataset: Dataset, *, workers: int, **kwargs: object) -> DataLoader:
        return DataLoader(
            dataset, num_workers=workers, pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None, **kwargs)

    def build_input_queue(self, data_rng: Rng, global_batch_size: int) -> LoaderInputQueue:
        return LoaderInputQueue(self, self.datasets.train, global_batch_size, data_rng)

    # --- model --------------------------------------------------------------------------

    def init_model_fn(self, rng: Rng, dropout_rate: float | None = None) -> tuple[ParameterContainer, ModelAuxiliaryState]:
        self._apply_precision()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(rng)
            model = self.build_model()
        model = self.model_to_device(model)
        if dropout_rate is not None:
            set_dropout(model, dropout_rate)
        if distributed.active():
            model = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.compile:
            model.compile()  # in place: parameter names stay those of the uncompiled model
        self._model = model
        return model, None

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
        inner = params.module if isinstance(params, DistributedDataParallel) else params
        training = mode is ForwardPassMode.TRAIN
        model = params if training else inner  # evaluation is sharded by hand: no DDP sync
        if inner.training != training:  # a walk over every module: only when it changes
            model.train(training)
        if dropout_rate is not None:
            set_dropout(model, dropout_rate)
        with self._autocast():
            if mode is ForwardPassMode.TRAIN and not update_batch_norm:
                with frozen_batch_norm_statistics(model):
                    logits = self.forward(model, augmented_and_preprocessed_input_batch)
            else:
                logits = self.forward(model, augmented_and_preprocessed_input_batch)
        return logits.float(), model_state

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()  # not even a disabled autocast: compiled graphs guard on its state

    @property
    def loss_type(self) -> LossType:
        return LossType.SOFTMAX_CROSS_ENTROPY

    def loss_fn(self, label_batch: Tensor, logits_batch: Tensor, mask_batch: Tensor | None = None, label_smoothing: float = 0.0) -> LossOutput:
        """Cross-entropy of (B, C) logits against (B,) class indices or (B, C) class
        probabilities (mixup); `mask_batch` (B,) weighs the examples."""
        per_example = F.cross_entropy(logits_batch, label_batch, reduction="none", label_smoothing=label_smoothing)
        if mask_batch is not None:
            per_example = per_example * mask_batch
            n_valid = mask_batch.sum()
        else:
            n_valid = torch.tensor(float(len(per_example)), device=per_example.device)
        return {"summed": per_example.sum(), "n_valid_examples": n_valid, "per_example": per_example}

    # --- evaluation ---------------------------------------------------------------------

    def eval_model(self, global_batch_size: int, params: ParameterContainer, model_state: ModelAuxiliaryState, rng: Rng, global_step: int) -> EvalResults:
        results: EvalResults = {}
        for split in ("train", "validation", "test"):
            for metric, value in self._evaluate_split(split, global_batch_size, params, model_state).items():
                results[f"{split}/{metric}"] = value
        return results

    def _eval_loader(self, split: str, global_batch_size: int) -> DataLoader:
        if split not in self._eval_loaders:
            dataset = {"train": self.datasets.eval_train, "validation": self.datasets.validation, "test": self.datasets.test}[split]
            local = math.ceil(global_batch_size / distributed.world_size())
            shard = _EvalShard(dataset, distributed.rank(), distributed.world_size(), local)
            self._eval_loaders[split] = self.data_loader(shard, workers=self.eval_num_workers, batch_size=local, shuffle=False,
                                                         collate_fn=_WeightedCollate(self.collate))
        return self._eval_loaders[split]

    def _evaluate_split(self, split: str, global_batch_size: int, params: ParameterContainer, model_state: ModelAuxiliaryState) -> dict[str, float]:
        sums: dict[str, Tensor] = {}
        outputs: list[object] = []
        gathers, count = False, 0.0
        with torch.no_grad():
            for host_batch, weights in self._eval_loader(split, global_batch_size):
                result = self.eval_batch(params, model_state, self.device_batch(host_batch, weights))
                for key, value in result.sums.items():
                    sums[key] = sums.get(key, 0.0) + value.double()
                if result.per_example:  # padding included, so the same on every rank
                    gathers = True
                    outputs += [output for output, weight in zip(result.per_example, weights.tolist(), strict=True) if weight]
                count += float(weights.sum())
        totals = torch.stack([*sums.values(), torch.tensor(count, dtype=torch.float64, device=self.device)])
        *values, count = distributed.all_reduce(totals).tolist()
        per_example = _in_dataset_order(distributed.all_gather_object(outputs)) if gathers else []
        return {**self.summarize(dict(zip(sums, values, strict=True)) | {"num_examples": count}, per_example), "num_examples": count}


def _split_evenly(n: int, parts: int, what: str) -> int:
    if n % parts:
        raise ValueError(f"{what} {n} is not divisible by the {parts} devices")
    return n // parts


def fixed_subset(size: int, n: int, seed: int) -> Sequence[int]:
    """`n` indices of a dataset of `size`, drawn without replacement by `seed`."""
    order = torch.randperm(size, generator=rnglib.generator(seed))
    return order[:min(n, size)].tolist()
