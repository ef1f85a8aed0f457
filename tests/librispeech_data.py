"""Tiny LibriSpeech in the layout AlgoPerf's `dataset_setup.py --librispeech` writes
(`workloads.data.librispeech.LAYOUT`), for tests: a SentencePiece model trained on the
transcripts, pandas CSVs of utterance ids, and int64 audio / int32 token-id .npy files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import sentencepiece

from workloads.data.librispeech import SUBSETS, TOKENIZER_FILE

WORDS = ("THE", "CAT", "SAT", "ON", "A", "MAT", "DOG", "RAN", "HOME", "AND")
SIZES = {"train-clean-100": 4, "train-clean-360": 2, "train-other-500": 2, "dev-clean": 3, "dev-other": 2, "test-clean": 3}
AUDIO_LENGTH = 8000
"""Samples every tiny utterance is padded to: 48 feature frames, 12 after subsampling."""
TARGET_LENGTH = 8


def transcript(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(1, 3))))


def write_sentencepiece(path: Path, sentences: list[str], vocab_size: int = 24) -> sentencepiece.SentencePieceProcessor:
    """A unigram model with SentencePiece's default ids (0 unk, 1 BOS, 2 EOS), as AlgoPerf's."""
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
                                             model_type="unigram", character_coverage=1.0, hard_vocab_limit=False,
                                             num_threads=1, minloglevel=2)
    path.write_bytes(model.getvalue())
    return sentencepiece.SentencePieceProcessor(model_file=str(path))


def make_librispeech(root: Path, seed: int = 0) -> dict[str, list[str]]:
    """`root` laid out as AlgoPerf's `$DATA_DIR/librispeech`; returns the transcripts written
    per subset, in CSV order."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    transcripts = {subset: [transcript(rng) for _ in range(n)] for subset, n in SIZES.items()}
    corpus = [" ".join(WORDS)] * 20 + [t for texts in transcripts.values() for t in texts]
    tokenizer = write_sentencepiece(root / TOKENIZER_FILE, corpus)
    for subset in (s for subsets in SUBSETS.values() for s in subsets):
        (root / subset).mkdir(exist_ok=True)
        ids = [f"{19 + i}-198-{i:04d}" for i in range(SIZES[subset])]
        for utterance, text in zip(ids, transcripts[subset], strict=True):
            audio = rng.integers(-3000, 3000, int(rng.integers(AUDIO_LENGTH * 3 // 4, AUDIO_LENGTH + 1)), dtype=np.int64)
            np.save(root / subset / f"{utterance}_audio.npy", audio)
            np.save(root / subset / f"{utterance}_targets.npy", np.array(tokenizer.encode(text) + [tokenizer.eos_id()], np.int32))
        pd.DataFrame(ids, columns=["id"]).to_csv(root / f"{subset}.csv")
    return transcripts
