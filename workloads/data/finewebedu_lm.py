"""FineWeb-Edu tokens for `finewebedu_lm`: the one-time conversion and the sequence reader.

AlgoPerf's `dataset/dataset_setup.py --finewebedu` (mlcommons/algorithmic-efficiency,
`download_finewebedu`) tokenizes FineWeb-Edu sample-10BT with the GPT-2 tokenizer (an EOS
token ends each document) and saves two Hugging Face `datasets` directories (`save_to_disk`):

    SOURCE/train/{state.json, dataset_info.json, data-00000-of-000NN.arrow, ...}
    SOURCE/val/{...}

whose `input_ids` column holds lists of token ids. AlgoPerf's input pipeline
(`algoperf/workloads/finewebedu_lm/input_pipeline.py`) concatenates a split's token lists
in order and cuts the stream into sequences of 1,025 tokens, dropping the remainder.

`convert(source, dest)` writes each split's concatenated stream once as a flat uint16 array
(GPT-2's 50,257 ids fit), `DEST/train.npy` and `DEST/val.npy`, read with Arrow alone (no
TensorFlow, no `datasets`); `TokenSequences` memory-maps one and serves the sequences.

    pacer data convert finewebedu_lm SOURCE DEST
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import Dataset

SPLITS = {"train": "train", "validation": "val"}
"""Pacer's split -> the folder (source) and file stem (converted) AlgoPerf names it by."""
TOKEN_COLUMN = "input_ids"
TOKEN_DTYPE = np.uint16


def arrow_files(split_dir: Path) -> list[Path]:
    """The Arrow files of a `save_to_disk` split, in the order `state.json` lists them.

    Raises:
        FileNotFoundError: no `state.json`, or a file it lists is missing.
        ValueError: `state.json` lists no files.
    """
    if not (split_dir / "state.json").is_file():
        raise FileNotFoundError(f"{split_dir} is not a `datasets` save_to_disk folder (no state.json); expected SOURCE/train and SOURCE/val "
                                "as AlgoPerf's dataset_setup.py --finewebedu writes them")
    state = json.loads((split_dir / "state.json").read_text())
    files = [split_dir / entry["filename"] for entry in state.get("_data_files", [])]
    if not files:
        raise ValueError(f"{split_dir / 'state.json'} lists no data files")
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"{path} (listed in state.json) does not exist")
    return files


def token_chunks(split_dir: Path) -> Iterator[np.ndarray]:
    """A split's tokens in order, one int array per Arrow record batch (memory-mapped reads).

    Raises:
        KeyError: a record batch has no `input_ids` column.
    """
    for path in arrow_files(split_dir):
        with pa.memory_map(str(path)) as source:
            for batch in pa.ipc.open_stream(source):
                if TOKEN_COLUMN not in batch.schema.names:
                    raise KeyError(f"{path} has no {TOKEN_COLUMN!r} column (has {', '.join(batch.schema.names)})")
                yield batch.column(TOKEN_COLUMN).flatten().to_numpy()


def convert(source_dir: str | Path, dest_dir: str | Path) -> dict[str, int]:
    """Write `DEST/train.npy` and `DEST/val.npy`, each split's token stream as a flat uint16
    array, from AlgoPerf's tokenized `save_to_disk` folders `SOURCE/train` and `SOURCE/val`.

    Two passes over the Arrow files (count, then copy); a split is written to a temporary
    name and renamed when complete, so an interrupted conversion leaves no valid-looking file.

    Returns:
        The number of tokens written per file stem.

    Raises:
        FileNotFoundError, ValueError, KeyError: a source split is missing or malformed, or
            a token id does not fit in uint16.
    """
    source, dest = Path(source_dir).expanduser(), Path(dest_dir).expanduser()
    for stem in SPLITS.values():  # both splits, before anything is written or read in full
        arrow_files(source / stem)
    dest.mkdir(parents=True, exist_ok=True)
    written = {}
    for stem in SPLITS.values():
        total = sum(len(chunk) for chunk in token_chunks(source / stem))
        partial = dest / f"{stem}.partial.npy"
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=TOKEN_DTYPE, shape=(total,))
        at = 0
        for chunk in token_chunks(source / stem):
            if len(chunk) and (chunk.min() < 0 or chunk.max() > np.iinfo(TOKEN_DTYPE).max):
                raise ValueError(f"{source / stem}: token ids outside [0, {np.iinfo(TOKEN_DTYPE).max}]")
            out[at:at + len(chunk)] = chunk
            at += len(chunk)
        out.flush()
        del out
        partial.rename(dest / f"{stem}.npy")
        written[stem] = total
    return written


class TokenSequences(Dataset[dict[str, torch.Tensor]]):
    """Sequences of `seq_len + 1` consecutive tokens of a flat token file, back to back (the
    remainder dropped), at most `limit` of them: item i is `{"tokens": int64 (seq_len + 1,)}`,
    whose first `seq_len` tokens are the inputs and last `seq_len` the targets.

    The file is memory-mapped on first access in each process (DataLoader workers included)."""

    def __init__(self, path: Path, seq_len: int, limit: int | None = None):
        self.path, self.span = path, seq_len + 1
        available = len(np.load(path, mmap_mode="r")) // self.span
        self.length = available if limit is None else min(limit, available)
        self._tokens: np.ndarray | None = None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"sequence {index} of {self.length}")
        if self._tokens is None:
            self._tokens = np.load(self.path, mmap_mode="r")
        start = index * self.span
        return {"tokens": torch.from_numpy(self._tokens[start:start + self.span].astype(np.int64))}

    def __getstate__(self) -> dict[str, object]:
        return self.__dict__ | {"_tokens": None}  # workers open their own map
