"""A tiny WMT de-en in the layout AlgoPerf's `dataset_setup.py --wmt` writes (TFDS TFRecord
shards of 'de'/'en' byte features, dataset_info.json, a SentencePiece model), generated for
tests: no download."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import sentencepiece
from tfrecord.writer import TFRecordWriter

WORDS = {"der": "the", "hund": "dog", "katze": "cat", "sieht": "sees", "mag": "likes", "ein": "a", "vogel": "bird",
         "haus": "house", "rot": "red", "klein": "small", "und": "and", "heute": "today"}
SIZES = {"train": 40, "validation": 7, "test": 5}
SHARDS = {"train": 2, "validation": 1, "test": 1}


def sentence_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """`n` (German, English) pairs translated word by word, 2-7 words, a full stop at the end."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        german = rng.choices(list(WORDS), k=rng.randint(2, 7))
        pairs.append((" ".join(german).capitalize() + ".", " ".join(WORDS[w] for w in german).capitalize() + "."))
    return pairs


def write_shards(folder: Path, dataset: str, split: str, pairs: list[tuple[str, str]], shards: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(shards):
        writer = TFRecordWriter(str(folder / f"{dataset}-{split}.tfrecord-{k:05d}-of-{shards:05d}"))
        for de, en in pairs[k::shards]:
            writer.write({"de": (de.encode(), "byte"), "en": (en.encode(), "byte")})
        writer.close()


def write_sentencepiece(path: Path, sentences: list[str], vocab_size: int = 48) -> None:
    """A unigram model with SentencePiece's default ids (0 unk, 1 BOS, 2 EOS), as AlgoPerf's."""
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
                                             model_type="unigram", character_coverage=1.0, hard_vocab_limit=False,
                                             num_threads=1, minloglevel=2)
    path.write_bytes(model.getvalue())


def make_wmt(root: Path) -> Path:
    """`root` laid out as AlgoPerf's `<data_dir>/wmt`; returns `root`."""
    splits = {split: sentence_pairs(n, seed) for seed, (split, n) in enumerate(SIZES.items())}
    for split, pairs in splits.items():
        dataset = "wmt17_translate" if split == "train" else "wmt14_translate"
        folder = root / dataset / "de-en" / "1.0.0"
        write_shards(folder, dataset, split, pairs, SHARDS[split])
        (folder / "dataset_info.json").write_text(json.dumps({"name": dataset, "version": "1.0.0",
                                                              "supervisedKeys": {"input": "de", "output": "en"}}))
    write_sentencepiece(root / "wmt_sentencepiece_model", [s for pair in splits["train"] for s in pair])
    return root
