"""Criteo 1TB click logs: AlgoPerf's raw TSV files -> memory-mapped arrays, and a reader.

AlgoPerf's `datasets/dataset_setup.py --criteo1tb` leaves the 24 days of click logs
uncompressed and split into files of 5,000,000 lines, `day_<d>_<NN>` (d in 0..23, NN from
00; day 23 has 36 files). Each line is `label \\t 13 integers \\t 26 hex strings`, any field
possibly empty. AlgoPerf (`algoperf/workloads/criteo1tb/input_pipeline.py`) parses them with
TensorFlow at every step; `convert` does the same preprocessing once:

* integers: empty and "-1" read as 0, then `log(max(x, 0) + 1)` in float32;
* categorical column i: the string (empty reads as "00000000") with `str(i)` appended,
  hashed by TensorFlow's `to_hash_bucket_fast` (FarmHash `Fingerprint64` mod the column's
  raw vocabulary size, `VOCAB_SIZES[i]`), then rounded through float32 as AlgoPerf's batch
  is (it carries the ids in the float32 inputs); the model reduces them mod its table size;
* splits: train is days 0-22, test the first 19 files of day 23 (`day_23_00`-`day_23_18`),
  validation the other 17, as AlgoPerf's input pipeline.

`python -m workloads.data.criteo1tb SRC DEST` writes, for each split, `DEST/<split>/`
`dense.npy` (float32 (N, 13)), `categorical.npy` (int32 (N, 26)) and `labels.npy`
(float32 (N,)), streaming in chunks of lines so that memory stays bounded.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

NUM_DENSE = 13
NUM_SPARSE = 26
NUM_DAY_23_FILES = 36
NUM_TEST_FILES = NUM_DAY_23_FILES // 2 + 1  # AlgoPerf: test is the first 19 files of day 23
SPLITS = ("train", "validation", "test")
ARRAYS = {"dense": (np.float32, (NUM_DENSE,)), "categorical": (np.int32, (NUM_SPARSE,)), "labels": (np.float32, ())}
VOCAB_SIZES = (
    39884406, 39043, 17289, 7420, 20263, 3, 7120, 1543, 63, 38532951, 2953546, 403346, 10,
    2208, 11938, 155, 4, 976, 14, 39979771, 25641295, 39664984, 585935, 12972, 108, 36,
)
"""Raw vocabulary size of each categorical column (AlgoPerf's `_VOCAB_SIZES`)."""
RAW_FILE = re.compile(r"day_(\d+)_(\d+)")
RAW_LAYOUT = "raw: AlgoPerf's day_<d>_<NN> TSV files (d 0..23, 5M lines each; day_23_00..day_23_35)"
CONVERTED_LAYOUT = ("converted (python -m workloads.data.criteo1tb RAW_DIR DATA_DIR): "
                    "{train,validation,test}/{dense,categorical,labels}.npy")

# FarmHash (farmhashna) constants.
_K0, _K2 = np.uint64(0xC3A5C85C97CB3127), np.uint64(0x9AE16A3B2F90404F)


def _rotate(x: np.ndarray, shift: int) -> np.ndarray:
    return (x >> np.uint64(shift)) | (x << np.uint64(64 - shift))


def _shift_mix(x: np.ndarray) -> np.ndarray:
    return x ^ (x >> np.uint64(47))


def _hash_len_16(u: np.ndarray, v: np.ndarray, mul: np.ndarray) -> np.ndarray:
    a = _shift_mix((u ^ v) * mul)
    b = _shift_mix((v ^ a) * mul)
    return b * mul


def _fetch(data: np.ndarray, start: np.ndarray, width: int) -> np.ndarray:
    """Little-endian unsigned words of `width` bytes from rows of `data` (N, 16) at `start` (N,)."""
    columns = start[:, None] + np.arange(width)
    raw = np.take_along_axis(data, np.clip(columns, 0, data.shape[1] - 1), axis=1).astype(np.uint64)
    return (raw << (np.uint64(8) * np.arange(width, dtype=np.uint64))).sum(axis=1, dtype=np.uint64)


def fingerprint64(strings: Sequence[bytes] | np.ndarray) -> np.ndarray:
    """FarmHash `Fingerprint64` (TensorFlow's `Fingerprint64`, which `to_hash_bucket_fast`
    uses) of byte strings of at most 16 bytes, vectorised: uint64 (N,).

    Raises:
        ValueError: a string is longer than 16 bytes (Criteo's hashed values are 8 hex
            digits and a column number; longer strings take FarmHash branches not written here).
    """
    data = np.asarray(strings, dtype=bytes) if len(strings) else np.zeros(0, dtype="S16")
    if data.dtype.itemsize > 16:
        raise ValueError(f"fingerprint64 takes strings of at most 16 bytes, not {data.dtype.itemsize}")
    data = data.astype("S16")
    n = np.char.str_len(data).astype(np.int64)
    data = data.view(np.uint8).reshape(len(strings), 16)
    length = n.astype(np.uint64)
    mul = _K2 + length * np.uint64(2)
    with np.errstate(over="ignore"):
        # 8-16 bytes
        a = _fetch(data, np.zeros_like(n), 8) + _K2
        b = _fetch(data, np.maximum(n - 8, 0), 8)
        long = _hash_len_16(_rotate(b, 37) * mul + a, (_rotate(a, 25) + b) * mul, mul)
        # 4-7 bytes
        medium = _hash_len_16(length + (_fetch(data, np.zeros_like(n), 4) << np.uint64(3)), _fetch(data, np.maximum(n - 4, 0), 4), mul)
        # 1-3 bytes
        rows = np.arange(len(n))
        first, middle, last = (data[rows, np.clip(i, 0, 15)].astype(np.uint64) for i in (np.zeros_like(n), n >> 1, n - 1))
        y, z = first + (middle << np.uint64(8)), length + (last << np.uint64(2))
        short = _shift_mix(y * _K2 ^ z * _K0) * _K2
    return np.select([n >= 8, n >= 4, n > 0], [long, medium, short], default=_K2)


def hash_buckets(values: np.ndarray, column: int) -> np.ndarray:
    """AlgoPerf's id of categorical `column`'s values (str (N,), missing already filled):
    `to_hash_bucket_fast(value + str(column), VOCAB_SIZES[column])` through float32, int32 (N,)."""
    keys = np.char.add(values.astype("U16"), str(column)).astype("S16")
    buckets = fingerprint64(keys) % np.uint64(VOCAB_SIZES[column])
    return buckets.astype(np.float32).astype(np.int32)  # AlgoPerf's float32 inputs round ids above 2**24


def parse_lines(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Raw Criteo fields (str (N, 40), as read by `read_chunks`) -> `ARRAYS`: labels float32
    (N,), dense float32 (N, 13) log-transformed, categorical int32 (N, 26) hashed."""
    fields = frame.to_numpy(dtype=object)
    missing = (fields == "") | (fields == "-1")  # AlgoPerf's decode_csv: na_value="-1", empty -> default
    numbers = np.where(missing[:, :1 + NUM_DENSE], "0", fields[:, :1 + NUM_DENSE]).astype(np.float32)
    dense = np.log(np.maximum(numbers[:, 1:], np.float32(0)) + np.float32(1))
    hexes = np.where(missing[:, 1 + NUM_DENSE:], "00000000", fields[:, 1 + NUM_DENSE:])
    categorical = np.stack([hash_buckets(hexes[:, i], i) for i in range(NUM_SPARSE)], axis=1)
    return {"dense": dense, "categorical": categorical, "labels": numbers[:, 0]}


def read_chunks(path: Path, chunk_lines: int) -> Iterator[pd.DataFrame]:
    """The TSV file's lines as str frames (N, 40) of at most `chunk_lines` rows.

    Raises:
        ValueError: a line has other than 40 fields.
    """
    reader = pd.read_csv(path, sep="\t", header=None, dtype=str, na_filter=False, quoting=3, chunksize=chunk_lines,
                         skip_blank_lines=False, engine="c")
    for frame in reader:
        if frame.shape[1] != 1 + NUM_DENSE + NUM_SPARSE:
            raise ValueError(f"{path}: lines have {frame.shape[1]} tab-separated fields, not {1 + NUM_DENSE + NUM_SPARSE}")
        yield frame


def split_files(source_dir: Path) -> dict[str, list[Path]]:
    """AlgoPerf's files of each split in `source_dir`: train `day_0_*`..`day_22_*` (in day and
    file order), test `day_23_00`..`day_23_18`, validation `day_23_19`..`day_23_35`.

    Raises:
        ValueError: no training file, or a file of day 23 missing (names the first).
    """
    names = sorted((tuple(map(int, m.groups())), p) for p in source_dir.glob("day_*") if (m := RAW_FILE.fullmatch(p.name)))
    train = [p for (day, _), p in names if day < 23]
    day_23 = [source_dir / f"day_23_{i:02d}" for i in range(NUM_DAY_23_FILES)]
    if not train:
        raise ValueError(f"no training files day_<0..22>_<NN> in {source_dir}")
    if absent := [p for p in day_23 if not p.is_file()]:
        raise ValueError(f"{absent[0]} is missing (day 23 must have {NUM_DAY_23_FILES} files, 00 to {NUM_DAY_23_FILES - 1})")
    return {"train": train, "validation": day_23[NUM_TEST_FILES:], "test": day_23[:NUM_TEST_FILES]}


def count_lines(path: Path, block: int = 1 << 24) -> int:
    """Lines in a text file, a last line without a newline included."""
    count, last = 0, b"\n"
    with path.open("rb") as f:
        while chunk := f.read(block):
            count, last = count + chunk.count(b"\n"), chunk[-1:]
    return count + (last != b"\n")


def convert(source_dir: str | Path, dest_dir: str | Path, chunk_lines: int = 1_000_000) -> dict[str, int]:
    """Convert AlgoPerf's raw Criteo 1TB files in `source_dir` into `dest_dir/<split>/`
    `{dense,categorical,labels}.npy` (see the module docstring), holding at most `chunk_lines`
    lines in memory. Each array is written under a temporary name and renamed when complete,
    so an interrupted conversion leaves no layout that `check_converted` accepts.

    Returns:
        The number of examples of each split.

    Raises:
        ValueError: the source layout is incomplete or a line is malformed.
    """
    source_dir, dest_dir = Path(source_dir), Path(dest_dir)
    sizes = {}
    for split, files in split_files(source_dir).items():
        n = sum(count_lines(p) for p in files)
        out = dest_dir / split
        out.mkdir(parents=True, exist_ok=True)
        arrays = {name: np.lib.format.open_memmap(out / f"{name}.npy.partial", mode="w+", dtype=dtype, shape=(n, *shape))
                  for name, (dtype, shape) in ARRAYS.items()}
        filled = 0
        for path in files:
            for frame in read_chunks(path, chunk_lines):
                for name, values in parse_lines(frame).items():
                    arrays[name][filled:filled + len(values)] = values
                filled += len(frame)
        if filled != n:
            raise ValueError(f"{split}: read {filled} lines of the {n} counted (blank lines?)")
        for name, array in arrays.items():
            array.flush()
            del array
            (out / f"{name}.npy.partial").replace(out / f"{name}.npy")
        sizes[split] = n
    return sizes


def check_converted(data_dir: Path) -> None:
    """Check the converted layout's files and shapes (headers only).

    Raises:
        ValueError: a file is missing or its shape or dtype does not fit the others.
    """
    for split in SPLITS:
        lengths = set()
        for name, (dtype, shape) in ARRAYS.items():
            path = data_dir / split / f"{name}.npy"
            if not path.is_file():
                raise ValueError(f"{path} is missing")
            array = np.load(path, mmap_mode="r")
            if array.dtype != dtype or array.shape[1:] != shape:
                raise ValueError(f"{path} holds {array.dtype} {array.shape}, not {np.dtype(dtype)} (N, {', '.join(map(str, shape))})")
            lengths.add(len(array))
        if len(lengths) != 1 or 0 in lengths:
            raise ValueError(f"{data_dir / split} holds arrays of lengths {sorted(lengths)}: not one non-zero length")


class CriteoArrays(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """One converted split, memory-mapped: example i is `(inputs, target)`, float32 (39,)
    (13 log-transformed integers, then the 26 categorical ids as floats, as AlgoPerf's
    `inputs`) and float32 () (the click label). The arrays are opened in each process that
    reads (a DataLoader worker too), never pickled."""

    def __init__(self, split_dir: str | Path):
        self.split_dir = Path(split_dir)
        self.length = len(np.load(self.split_dir / "labels.npy", mmap_mode="r"))
        self._arrays: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.length

    def __getstate__(self) -> dict[str, object]:
        return self.__dict__ | {"_arrays": None}

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._arrays is None:
            self._arrays = {name: np.load(self.split_dir / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
        inputs = np.concatenate([self._arrays["dense"][index], self._arrays["categorical"][index].astype(np.float32)])
        return torch.from_numpy(inputs), torch.tensor(self._arrays["labels"][index])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workloads.data.criteo1tb", description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="AlgoPerf's criteo1tb folder of day_<d>_<NN> files")
    parser.add_argument("dest", type=Path, help="where to write {train,validation,test}/*.npy")
    parser.add_argument("--chunk-lines", type=int, default=1_000_000, help="lines parsed at a time (bounds memory)")
    args = parser.parse_args(argv)
    try:
        sizes = convert(args.source, args.dest, args.chunk_lines)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(", ".join(f"{split}: {n} examples" for split, n in sizes.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
