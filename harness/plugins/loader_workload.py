"""The shared base of image-classification workloads that stream their data from disk.

A concrete workload (one file in `workloads/`) supplies `check_data` (a cheap look at the
data directory that raises `PacerUserError` naming the expected layout), `make_datasets`
(datasets of `(uint8 CHW image, label)`, augmentation included) and `build_model`. This base
supplies the rest of `harness.core.spec.Workload`:

* the training stream: DataLoader workers, pinned memory, persistent workers; every
  example's augmentation is seeded by its position in the stream, so the stream depends on
  the data seed alone (not on the number of workers or devices); images travel as uint8 and
  are normalised (and made channels-last) on the device;
* DDP: the global batch is split across ranks, the model is wrapped in
  `DistributedDataParallel`, evaluation is sharded and its sums all-reduced;
* evaluation that counts every example exactly once: each rank's shard is padded to whole
  batches and the padding carries weight 0;
* the options `precision` (bf16 autocast, strict fp32 or TF32 matmuls) and `compile`.
"""

from __future__ import annotations

import abc
import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

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
    MetricDirection,
    ModelAuxiliaryState,
    ParameterContainer,
    Rng,
    Tensor,
    Workload,
)
from harness.plugins.tensor_workload import BuiltModelParameters, frozen_batch_norm_statistics, set_dropout

PRECISIONS = ("bf16", "fp32", "tf32")
Example = tuple[Tensor, int]
"""A uint8 (3, H, W) image and its class."""


@dataclass(frozen=True)
class VisionDatasets:
    train: Dataset[Example]
    """Augmented training examples."""
    eval_train: Dataset[Example]
    """A fixed subset of the training set with the evaluation transform."""
    validation: Dataset[Example]
    test: Dataset[Example]


class _Seeded(Dataset[Example]):
    """Reads `(index, seed)` keys: seeds torch's RNG (which torchvision's random transforms
    draw from) before loading, so an example's augmentation depends on its key alone."""

    def __init__(self, dataset: Dataset[Example]):
        self.dataset = dataset

    def __getitem__(self, key: tuple[int, int]) -> Example:
        index, seed = key
        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG alone (workers=0)
            torch.manual_seed(seed)
            return self.dataset[index]


class ShardedStream:
    """Batch sampler of an endless stream: epoch after epoch, each a permutation of the
    dataset derived from the seed. Global batch k is positions [k*G, (k+1)*G) of the
    stream; rank r gets the r-th of its `world` equal slices."""

    def __init__(self, size: int, seed: Rng, global_batch: int, rank: int, world: int, first_batch: int):
        self.size, self.seed, self.global_batch = size, seed, global_batch
        self.local = global_batch // world
        self.rank, self.first_batch = rank, first_batch
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.long)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        k = self.first_batch
        while True:
            start = k * self.global_batch + self.rank * self.local
            yield [self._key(p) for p in range(start, start + self.local)]
            k += 1

    def _key(self, position: int) -> tuple[int, int]:
        epoch, i = divmod(position, self.size)
        if epoch != self._epoch:
            self._epoch = epoch
            self._order = torch.randperm(self.size, generator=rnglib.generator(rnglib.fold_in(self.seed, epoch)))
        return int(self._order[i]), (self.seed + position) % (1 << 63)


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
        stream = ShardedStream(len(self.dataset), self.rng, self.global_batch, distributed.rank(), self.world, self.taken // self.local)
        self.loader = self.workload.data_loader(_Seeded(self.dataset), batch_sampler=stream, workers=self.workload.num_workers)
        self.batches = iter(self.loader)
        skip = self.taken % self.local
        self.pending: list[tuple[Tensor, Tensor]] = [tuple(t[skip:] for t in next(self.batches))] if skip else []

    def take(self, n: int) -> Batch:
        need = _split_evenly(n, self.world, "take(n)")
        parts, have = [], 0
        while have < need:
            images, labels = self.pending.pop(0) if self.pending else next(self.batches)
            used = min(need - have, len(labels))
            parts.append((images[:used], labels[:used]))
            if used < len(labels):
                self.pending.insert(0, (images[used:], labels[used:]))
            have += used
        step = self.taken // self.local
        self.taken += need
        images, labels = (torch.cat(p) for p in zip(*parts, strict=True)) if len(parts) > 1 else parts[0]
        batch = self.workload.device_batch(images, labels)
        return self.workload.augment_batch(batch, rnglib.fold_in(self.rng, -1 - step))

    def __next__(self) -> Batch:
        return self.take(self.global_batch)

    def state_dict(self) -> dict[str, object]:
        return {"taken": self.taken}

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        self.taken = int(state["taken"])
        self._restart()


class _EvalShard(Dataset[tuple[Tensor, int, float]]):
    """This rank's examples (rank, rank + world, ...) padded to whole batches; the padding
    repeats example 0 with weight 0, so every rank runs the same number of full batches."""

    def __init__(self, dataset: Dataset[Example], rank: int, world: int, batch: int):
        self.dataset, self.rank, self.world, self.size = dataset, rank, world, len(dataset)
        self.length = math.ceil(math.ceil(self.size / world) / batch) * batch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[Tensor, int, float]:
        index = self.rank + i * self.world
        if index < self.size:
            return (*self.dataset[index], 1.0)
        return (*self.dataset[0], 0.0)


class LoaderWorkload(BuiltModelParameters, Workload):
    """Base for image classifiers fed by DataLoaders. Keyword arguments are the config's keys."""

    target_metric_name = "accuracy"
    target_metric_direction = MetricDirection.MAXIMIZE
    multi_device = True
    """Runs under DDP (`pacer run ... devices=N`)."""
    mean: tuple[float, float, float]
    """Per-channel mean of the images on the 0-255 scale."""
    std: tuple[float, float, float]

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
        eval_batch_size: int,
        data_dir: str,
        eval_train_size: int,
        num_workers: int = 4,
        eval_num_workers: int = 4,
        precision: str = "fp32",
        compile: bool = False,
        channels_last: bool = True,
        dataset_seed: int = 0,
        device: str = "cpu",
        base_name: str | None = None,
        variant: str | None = None,
    ):
        self.name, self.base_name, self.variant = name, base_name or name, variant
        self.validation_target_value, self.test_target_value = finite_number("validation_target", validation_target), finite_number("test_target", test_target)
        self.max_allowed_runtime_sec, self.eval_period_time_sec = seconds("max_runtime_sec", max_runtime_sec), seconds("eval_period_sec", eval_period_sec, zero_ok=True)
        self.step_hint, self.reference_batch_size = whole_number("step_hint", step_hint), whole_number("batch_size", batch_size)
        self.eval_batch_size, self.dataset_seed = whole_number("eval_batch_size", eval_batch_size), whole_number("dataset_seed", dataset_seed, minimum=0)
        self.data_dir, self.eval_train_size = Path(data_dir).expanduser(), whole_number("eval_train_size", eval_train_size)
        self.num_workers, self.eval_num_workers = whole_number("num_workers", num_workers, minimum=0), whole_number("eval_num_workers", eval_num_workers, minimum=0)
        self.precision, self.compile, self.channels_last = check_choice("precision", precision, PRECISIONS), flag("compile", compile), flag("channels_last", channels_last)
        self.device = torch.device(device)
        self._datasets: VisionDatasets | None = None
        self._eval_loaders: dict[str, DataLoader] = {}
        self._model: nn.Module | None = None
        self._normalizer: tuple[Tensor, Tensor] | None = None
        self.check_data()

    # --- what a concrete workload provides -------------------------------------------

    @abc.abstractmethod
    def check_data(self) -> None:
        """Cheaply check `data_dir`; raise `PacerUserError` naming the expected layout."""

    @abc.abstractmethod
    def make_datasets(self) -> VisionDatasets:
        """The four datasets; `eval_train` must not depend on anything but `dataset_seed`."""

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised model (the torch RNG is seeded by the caller)."""

    def augment_batch(self, batch: Batch, rng: Rng) -> Batch:
        """Batch-level augmentation on the device (e.g. mixup); none by default."""
        return batch

    # --- options ------------------------------------------------------------------------

    @property
    def run_options(self) -> dict[str, object]:
        """Options that change what is timed: recorded in the run record and in the
        hardware/software fingerprint, so that scoring never compares across them."""
        return {"precision": self.precision, "compile": self.compile, "world_size": distributed.world_size()}

    def _apply_precision(self) -> None:
        tf32 = self.precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32  # on by default in torch: off unless asked

    # --- data ---------------------------------------------------------------------------

    @property
    def datasets(self) -> VisionDatasets:
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

    def device_batch(self, images: Tensor, labels: Tensor, weights: Tensor | None = None) -> Batch:
        """uint8 (B, 3, H, W) on the host -> normalised float inputs on the device."""
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        inputs = images.to(self.device, non_blocking=True).to(dtype=torch.float32, memory_format=memory_format)
        if self._normalizer is None:
            self._normalizer = (torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1), torch.tensor(self.std, device=self.device).view(1, 3, 1, 1))
        mean, std = self._normalizer
        batch = {"inputs": (inputs - mean) / std, "targets": labels.to(self.device, non_blocking=True)}
        if weights is not None:
            batch["weights"] = weights.to(self.device, dtype=torch.float32, non_blocking=True)
        return batch

    def build_input_queue(self, data_rng: Rng, global_batch_size: int) -> LoaderInputQueue:
        return LoaderInputQueue(self, self.datasets.train, global_batch_size, data_rng)

    # --- model --------------------------------------------------------------------------

    def init_model_fn(self, rng: Rng, dropout_rate: float | None = None) -> tuple[ParameterContainer, ModelAuxiliaryState]:
        self._apply_precision()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(rng)
            model = self.build_model()
        model = model.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
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
        inputs = augmented_and_preprocessed_input_batch["inputs"]
        with self._autocast():
            if mode is ForwardPassMode.TRAIN and not update_batch_norm:
                with frozen_batch_norm_statistics(model):
                    logits = model(inputs)
            else:
                logits = model(inputs)
        return logits.float(), model_state

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()  # not even a disabled autocast: compiled graphs guard on its state

    @property
    def loss_type(self) -> LossType:
        return LossType.SOFTMAX_CROSS_ENTROPY

    def loss_fn(self, label_batch: Tensor, logits_batch: Tensor, mask_batch: Tensor | None = None, label_smoothing: float = 0.0) -> LossOutput:
        """Cross-entropy against class indices or (mixup) class probabilities."""
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
            self._eval_loaders[split] = self.data_loader(shard, workers=self.eval_num_workers, batch_size=local, shuffle=False)
        return self._eval_loaders[split]

    def _evaluate_split(self, split: str, global_batch_size: int, params: ParameterContainer, model_state: ModelAuxiliaryState) -> dict[str, float]:
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss, correct, examples
        with torch.no_grad():
            for images, labels, weights in self._eval_loader(split, global_batch_size):
                batch = self.device_batch(images, labels, weights)
                logits, _ = self.model_fn(params, batch, model_state, ForwardPassMode.EVAL, 0, update_batch_norm=False)
                loss = self.loss_fn(batch["targets"], logits, batch["weights"])["summed"]
                correct = ((logits.argmax(-1) == batch["targets"]) * batch["weights"]).sum()
                sums += torch.stack([loss.double(), correct.double(), batch["weights"].sum().double()])
        loss, correct, count = distributed.all_reduce(sums).tolist()
        return {"loss": loss / count, "accuracy": correct / count, "num_examples": count}


def _split_evenly(n: int, parts: int, what: str) -> int:
    if n % parts:
        raise ValueError(f"{what} {n} is not divisible by the {parts} devices")
    return n // parts


def fixed_subset(size: int, n: int, seed: int) -> Sequence[int]:
    """`n` indices of a dataset of `size`, drawn without replacement by `seed`."""
    order = torch.randperm(size, generator=rnglib.generator(seed))
    return order[:min(n, size)].tolist()
