"""LibriSpeech as AlgoPerf's speech workloads read it, and the features both models compute
from it: the converter from the raw release, the reader of the preprocessed layout, the
log-mel frontend and SpecAugment.

Layout (`LAYOUT`): what AlgoPerf's `datasets/dataset_setup.py --librispeech` writes into
`$DATA_DIR/librispeech` with `datasets/librispeech_tokenizer.py` and
`datasets/librispeech_preprocess.py`: the SentencePiece model `spm_model.vocab` (a binary
model despite its name), and per LibriSpeech subset a pandas CSV `<subset>.csv` (header
`,id`, rows `<row>,<utterance id>`) and, in the folder `<subset>/`, `<id>_audio.npy` (1-D int
PCM samples at 16 kHz, at most 320,000) and `<id>_targets.npy` (1-D int SentencePiece ids of
the transcript, EOS last, at most 256). Reading it needs no TensorFlow, and neither does
writing it: `convert` (`pacer data convert librispeech RAW DEST`) does what those two scripts
do, from the raw LibriSpeech release (FLAC decoded with soundfile, the tokenizer trained with
sentencepiece), and keeps an `spm_model.vocab` already in DEST.

The frontend and SpecAugment follow AlgoPerf's PyTorch modules
(algoperf/workloads/librispeech_conformer/librispeech_pytorch/preprocessor.py and
spectrum_augmenter.py), which run inside the model on the device.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import BinaryIO

import numpy as np
import sentencepiece
import soundfile
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, Dataset

SUBSETS = {
    "train": ("train-clean-100", "train-clean-360", "train-other-500"),
    "validation": ("dev-clean", "dev-other"),
    "test": ("test-clean",),
}
"""AlgoPerf's splits as LibriSpeech subsets (its `_build_input_queue`)."""
ALL_SUBSETS = tuple(subset for subsets in SUBSETS.values() for subset in subsets)
TOKENIZER_FILE = "spm_model.vocab"
MAX_AUDIO_LENGTH, MAX_TARGET_LENGTH = 320_000, 256
"""Every utterance is padded to these many samples and tokens (AlgoPerf's input_pipeline.py)."""
LAYOUT = (f"{TOKENIZER_FILE} and, for each LibriSpeech subset S of {', '.join(ALL_SUBSETS)}, "
          "S.csv (header ',id', rows '<n>,<utterance id>') and S/<id>_audio.npy, S/<id>_targets.npy "
          "(AlgoPerf's dataset_setup.py --librispeech, or `pacer data convert librispeech RAW DEST` from the raw release; "
          "see docs/workloads/librispeech.md)")

SAMPLE_RATE = 16_000
NUM_MEL_BINS = 80
FRAME_STEP = SAMPLE_RATE * 10 // 1000
"""10 ms between frames."""
FRAME_SIZE = SAMPLE_RATE * 25 // 1000 + 1
"""25 ms of samples plus the one that pre-emphasis consumes."""
FFT_SIZE = 512
"""The power of two above FRAME_SIZE."""
PREEMPHASIS, MEL_FLOOR = 0.97, 1e-5
LOWER_EDGE_HERTZ, UPPER_EDGE_HERTZ = 125.0, 7600.0
LOG_MEL_MEAN = (
    -7.604781627655029, -7.120622634887695, -6.886424541473389, -6.870576858520508, -6.966772079467773,
    -7.108409404754639, -6.952802658081055, -6.783994197845459, -6.619552135467529, -6.487626552581787,
    -6.4120659828186035, -6.394047737121582, -6.424487113952637, -6.399371147155762, -6.515827178955078,
    -6.713799953460693, -6.847687721252441, -6.988500118255615, -6.922138690948486, -7.146148681640625,
    -7.204040050506592, -7.053755283355713, -7.314038276672363, -7.1223249435424805, -7.30251407623291,
    -7.121214389801025, -7.242573261260986, -7.173053741455078, -7.0979413986206055, -7.088747501373291,
    -6.984991073608398, -6.878773212432861, -6.760275363922119, -6.630094528198242, -6.5145769119262695,
    -6.424505710601807, -6.356513500213623, -6.31787633895874, -6.266077041625977, -6.246832847595215,
    -6.2821526527404785, -6.190838813781738, -6.2484354972839355, -6.147264003753662, -6.092472553253174,
    -6.0171003341674805, -5.925040245056152, -5.853583335876465, -5.820910930633545, -5.811892986297607,
    -5.80783748626709, -5.771462917327881, -5.745373249053955, -5.770565509796143, -5.776564121246338,
    -5.783167362213135, -5.795408725738525, -5.799482345581055, -5.802347660064697, -5.804711818695068,
    -5.8168182373046875, -5.884479999542236, -5.972710609436035, -6.044466018676758, -6.128486633300781,
    -6.2257585525512695, -6.315749645233154, -6.39061164855957, -6.492859840393066, -6.5498456954956055,
    -6.605432033538818, -6.6508378982543945, -6.66917610168457, -6.672688961029053, -6.684234619140625,
    -6.697457790374756, -6.75471830368042, -6.794914245605469, -6.8634209632873535, -6.94186544418335
)
LOG_MEL_STDDEV = (
    3.435328245162964, 3.5962932109832764, 3.701247215270996, 3.7369205951690674, 3.7535104751586914,
    3.693629264831543, 3.6922497749328613, 3.7641522884368896, 3.8419716358184814, 3.899984836578369,
    3.9294240474700928, 3.9317409992218018, 3.9139585494995117, 3.9031598567962646, 3.8691999912261963,
    3.8155081272125244, 3.7644970417022705, 3.7099106311798096, 3.6965086460113525, 3.600376605987549,
    3.5493226051330566, 3.5465121269226074, 3.45003604888916, 3.4712812900543213, 3.408461093902588,
    3.4408135414123535, 3.4104881286621094, 3.4217638969421387, 3.4312851428985596, 3.4199209213256836,
    3.4305806159973145, 3.4382665157318115, 3.4580366611480713, 3.4817991256713867, 3.495871067047119,
    3.5036792755126953, 3.5047574043273926, 3.498873472213745, 3.493056058883667, 3.4822943210601807,
    3.459430456161499, 3.4612770080566406, 3.455906391143799, 3.4755423069000244, 3.497154951095581,
    3.532655715942383, 3.5705199241638184, 3.592031240463257, 3.596907377243042, 3.5913500785827637,
    3.5865931510925293, 3.5826809406280518, 3.5837743282318115, 3.5895791053771973, 3.5819313526153564,
    3.583786964416504, 3.586118459701538, 3.588958978652954, 3.592214822769165, 3.5939455032348633,
    3.585663080215454, 3.588411331176758, 3.592102289199829, 3.5870490074157715, 3.5806570053100586,
    3.5731067657470703, 3.561753273010254, 3.54980731010437, 3.5527374744415283, 3.547536611557007,
    3.538784980773926, 3.525617837905884, 3.503183603286743, 3.4922726154327393, 3.487964630126953,
    3.4725594520568848, 3.455838918685913, 3.435182809829712, 3.428429365158081, 3.429917097091675
)
"""Per mel bin, the mean and standard deviation of LibriSpeech's log-mel features
(AlgoPerf's LIBRISPEECH_MEAN_VECTOR / LIBRISPEECH_STD_VECTOR)."""


class DataLayoutError(ValueError):
    """The data directory is not in `LAYOUT`."""


def utterance_ids(data_dir: Path, subset: str) -> list[str]:
    """`<subset>/<utterance id>` of every row of `<subset>.csv`, in file order.

    Raises:
        DataLayoutError: the CSV is missing or has no `id` column.
    """
    path = data_dir / f"{subset}.csv"
    if not path.is_file():
        raise DataLayoutError(f"{path} does not exist")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0][1:2] != ["id"]:
        raise DataLayoutError(f"{path} lacks the header ',id'")
    return [f"{subset}/{row[1]}" for row in rows[1:]]


def load_tokenizer(data_dir: Path) -> sentencepiece.SentencePieceProcessor:
    """The SentencePiece model `spm_model.vocab` of `data_dir`.

    Raises:
        DataLayoutError: it is missing or not a SentencePiece model.
    """
    path = data_dir / TOKENIZER_FILE
    if not path.is_file():
        raise DataLayoutError(f"{path} does not exist")
    try:
        return sentencepiece.SentencePieceProcessor(model_file=str(path))
    except (RuntimeError, OSError) as e:
        raise DataLayoutError(f"{path} is not a SentencePiece model ({e})") from None


def pad_to(values: np.ndarray, length: int, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A 1-D array zero-padded to `length`, and its paddings (1.0 where padded), float32.

    Raises:
        DataLayoutError: the array is not 1-D or is longer than `length`.
    """
    if values.ndim != 1 or len(values) > length:
        raise DataLayoutError(f"{what} has shape {values.shape}; expected 1-D of at most {length}")
    paddings = torch.ones(length)
    paddings[:len(values)] = 0.0
    return F.pad(torch.from_numpy(values.astype(np.float32)), (0, length - len(values))), paddings


class Utterances(Dataset[dict[str, torch.Tensor]]):
    """The utterances of one LibriSpeech subset, each padded to a fixed length (AlgoPerf's
    `LibriSpeechDataset`, algoperf/workloads/librispeech_conformer/input_pipeline.py).

    An example: `audio` (T,) float32 raw samples, `audio_paddings` (T,), `targets` (L,) int64
    token ids and `target_paddings` (L,); paddings are 1.0 past the utterance's end.
    """

    def __init__(self, data_dir: Path, subset: str, max_audio_length: int = MAX_AUDIO_LENGTH, max_target_length: int = MAX_TARGET_LENGTH):
        self.data_dir, self.ids = data_dir, utterance_ids(data_dir, subset)
        self.max_audio_length, self.max_target_length = max_audio_length, max_target_length

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        prefix = self.data_dir / self.ids[index]
        try:
            audio = np.load(f"{prefix}_audio.npy")
            targets = np.load(f"{prefix}_targets.npy")
        except (OSError, ValueError) as e:
            raise DataLayoutError(f"utterance {self.ids[index]} is unreadable ({e})") from None
        audio, audio_paddings = pad_to(audio, self.max_audio_length, f"{prefix}_audio.npy")
        targets, target_paddings = pad_to(targets, self.max_target_length, f"{prefix}_targets.npy")
        return {"audio": audio, "audio_paddings": audio_paddings, "targets": targets.long(), "target_paddings": target_paddings}


def split_dataset(data_dir: Path, split: str, max_audio_length: int = MAX_AUDIO_LENGTH,
                  max_target_length: int = MAX_TARGET_LENGTH) -> ConcatDataset[dict[str, torch.Tensor]]:
    """The subsets of AlgoPerf's `split` ("train", "validation" or "test"), concatenated in
    the order of `SUBSETS`."""
    return ConcatDataset([Utterances(data_dir, subset, max_audio_length, max_target_length) for subset in SUBSETS[split]])


TOKENIZER_VOCAB_SIZE = 1024
TOKENIZER_SUBSET = "train-clean-100"
TOKENIZER_MAX_CHARS = 10_000_000
"""AlgoPerf's librispeech_tokenizer.py: a 1,024-piece unigram SentencePiece model (character
coverage 1.0, SentencePiece's default NFKC normalization, transcripts in their original upper
case) trained on train-clean-100's transcripts, at most 10^7 characters of them (newlines
counted)."""
MAX_TRANSCRIPT_CHARS = 256
"""AlgoPerf's librispeech_preprocess.py drops an utterance whose transcript has more characters
(not tokens) than this, or whose audio has more than MAX_AUDIO_LENGTH samples."""


def raw_subsets(source_dir: Path) -> dict[str, Path]:
    """The folders of the subsets of `ALL_SUBSETS` in a raw LibriSpeech release:
    `source_dir/LibriSpeech/<subset>`, or `source_dir/<subset>` when `source_dir` is the
    `LibriSpeech` folder itself.

    Raises:
        FileNotFoundError: `source_dir` is not a folder or holds none of the subsets.
    """
    if not source_dir.is_dir():
        raise FileNotFoundError(f"{source_dir} is not a folder")
    root = source_dir / "LibriSpeech" if (source_dir / "LibriSpeech").is_dir() else source_dir
    found = {subset: root / subset for subset in ALL_SUBSETS if (root / subset).is_dir()}
    if not found:
        raise FileNotFoundError(f"{source_dir} holds no LibriSpeech subset (expected LibriSpeech/<subset>/<speaker>/<chapter>/ "
                                f"for a subset of {', '.join(ALL_SUBSETS)})")
    return found


def chapters(subset_dir: Path) -> list[Path]:
    """The `<speaker>/<chapter>` folders of a raw subset, sorted by name."""
    return sorted(chapter for speaker in subset_dir.iterdir() if speaker.is_dir() for chapter in speaker.iterdir() if chapter.is_dir())


def read_transcripts(chapter: Path) -> list[tuple[str, str]]:
    """(utterance id, transcript) for each line of the chapter's
    `<speaker>-<chapter>.trans.txt`, in file order; none when the file is missing (AlgoPerf
    skips such a chapter).

    Raises:
        ValueError: a line is not `<utterance id> <transcript>`.
    """
    path = chapter / f"{chapter.parent.name}-{chapter.name}.trans.txt"
    if not path.is_file():
        return []
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        utterance, _, text = line.strip().partition(" ")
        if not text:
            raise ValueError(f"{path}:{number}: expected '<utterance id> <transcript>'")
        pairs.append((utterance, text))
    return pairs


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write `path` through `write` under a temporary name, then rename it, so that an
    interrupted conversion never leaves a truncated file under the final name."""
    temporary = path.with_name(path.name + ".partial")
    with temporary.open("wb") as f:
        write(f)
    temporary.replace(path)


def tokenizer_corpus(subset_dir: Path) -> list[str]:
    """The transcripts of a raw subset, chapter by chapter, while they total at most
    `TOKENIZER_MAX_CHARS` characters with a newline each."""
    corpus, chars = [], 0
    for chapter in chapters(subset_dir):
        for _, text in read_transcripts(chapter):
            chars += len(text) + 1
            if chars > TOKENIZER_MAX_CHARS:
                return corpus
            corpus.append(text)
    return corpus


def train_tokenizer(subset_dir: Path, path: Path, vocab_size: int) -> None:
    """Train a unigram SentencePiece model of `vocab_size` pieces as AlgoPerf does (see
    `TOKENIZER_VOCAB_SIZE`) on the transcripts of `subset_dir`, and write it to `path`.

    Raises:
        ValueError: SentencePiece refuses the corpus (e.g. too few distinct pieces for
            `vocab_size`).
    """
    corpus = tokenizer_corpus(subset_dir)
    model = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_writer=model, vocab_size=vocab_size,
                                                 model_type="unigram", character_coverage=1.0, minloglevel=2)
    except RuntimeError as e:
        raise ValueError(f"training the tokenizer on {subset_dir}: {e}") from None
    write_atomically(path, lambda f: f.write(model.getvalue()))


def read_flac(path: Path) -> np.ndarray:
    """(T,) int16 samples of a mono 16 kHz FLAC file.

    Raises:
        ValueError: the file is unreadable, not mono or not at 16 kHz.
    """
    try:
        audio, rate = soundfile.read(path, dtype="int16")
    except RuntimeError as e:
        raise ValueError(f"{path}: {e}") from None
    if audio.ndim != 1 or rate != SAMPLE_RATE:
        raise ValueError(f"{path}: {audio.shape[1] if audio.ndim > 1 else 1} channel(s) at {rate} Hz; expected mono at {SAMPLE_RATE} Hz")
    return audio


def convert_chapter(chapter: Path, out_dir: Path, tokenizer: sentencepiece.SentencePieceProcessor) -> list[str]:
    """Write `<id>_audio.npy` (int64 samples) and `<id>_targets.npy` (int32 token ids, EOS
    last) into `out_dir` for each utterance of `chapter` that AlgoPerf keeps; their ids, in
    transcript order.

    Raises:
        ValueError: a transcript line or a FLAC file is malformed.
    """
    kept = []
    for utterance, text in read_transcripts(chapter):
        flac = chapter / f"{utterance}.flac"
        if not flac.is_file() or len(text) > MAX_TRANSCRIPT_CHARS:
            continue
        audio = read_flac(flac)
        if len(audio) > MAX_AUDIO_LENGTH:
            continue
        targets = np.array(tokenizer.encode(text) + [tokenizer.eos_id()], dtype=np.int32)
        write_atomically(out_dir / f"{utterance}_audio.npy", partial(np.save, arr=audio.astype(np.int64)))
        write_atomically(out_dir / f"{utterance}_targets.npy", partial(np.save, arr=targets))
        kept.append(utterance)
    return kept


def convert_subset(subset_dir: Path, dest: Path, tokenizer: sentencepiece.SentencePieceProcessor, pool: Executor) -> int:
    """Convert one raw subset into `dest/<subset>/` and, last, `dest/<subset>.csv`; the number
    of utterances written."""
    out = dest / subset_dir.name
    out.mkdir(exist_ok=True)
    ids = [utterance for kept in pool.map(partial(convert_chapter, out_dir=out, tokenizer=tokenizer), chapters(subset_dir)) for utterance in kept]
    table = ",id\n" + "".join(f"{row},{utterance}\n" for row, utterance in enumerate(ids))
    write_atomically(dest / f"{subset_dir.name}.csv", lambda f: f.write(table.encode()))
    return len(ids)


def convert(source_dir: str | Path, dest_dir: str | Path, vocab_size: int = TOKENIZER_VOCAB_SIZE, jobs: int | None = None) -> dict[str, int]:
    """Write `LAYOUT` into `dest_dir` from the raw LibriSpeech release in `source_dir`
    (`LibriSpeech/<subset>/<speaker>/<chapter>/<id>.flac` and `<speaker>-<chapter>.trans.txt`,
    or the `LibriSpeech` folder itself), as AlgoPerf's librispeech_tokenizer.py and
    librispeech_preprocess.py do, without TensorFlow.

    The tokenizer is trained on train-clean-100's transcripts (`TOKENIZER_VOCAB_SIZE` pieces
    unless `vocab_size` says otherwise) unless `dest_dir/spm_model.vocab` exists: an
    AlgoPerf-written model there is kept, not retrained. Then every subset of `ALL_SUBSETS`
    present is converted, `jobs` chapters at a time (None: one per CPU core this process may
    use), dropping utterances over `MAX_TRANSCRIPT_CHARS` characters or `MAX_AUDIO_LENGTH`
    samples or without a FLAC file. Each file is written under a temporary name and renamed,
    and a subset's CSV last, so an interrupted conversion leaves no CSV naming missing files.

    Returns:
        The number of utterances written per subset.

    Raises:
        FileNotFoundError: the source holds no subset, or no train-clean-100 while DEST has no
            tokenizer.
        ValueError: a transcript, FLAC file or existing tokenizer is malformed, or SentencePiece
            cannot train `vocab_size` pieces.
    """
    subsets = raw_subsets(Path(source_dir).expanduser())
    dest = Path(dest_dir).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    if not (dest / TOKENIZER_FILE).is_file():
        if TOKENIZER_SUBSET not in subsets:
            raise FileNotFoundError(f"{source_dir} has no {TOKENIZER_SUBSET} to train the tokenizer on, and {dest / TOKENIZER_FILE} does not exist")
        train_tokenizer(subsets[TOKENIZER_SUBSET], dest / TOKENIZER_FILE, vocab_size)
    tokenizer = load_tokenizer(dest)
    with ThreadPoolExecutor(jobs or len(os.sched_getaffinity(0))) as pool:
        return {subset: convert_subset(folder, dest, tokenizer, pool) for subset, folder in subsets.items()}


def hertz_to_mel(hertz: float | torch.Tensor) -> float | torch.Tensor:
    """HTK's mel scale: 1127 ln(1 + f / 700)."""
    return 1127.0 * (math.log1p(hertz / 700.0) if isinstance(hertz, float) else torch.log1p(hertz / 700.0))


def mel_weights(num_spectrogram_bins: int = FFT_SIZE // 2 + 1) -> torch.Tensor:
    """(num_spectrogram_bins, 80) triangular filters, linear in mel, the DC bin excluded:
    `tf.signal.linear_to_mel_weight_matrix` as AlgoPerf ports it (computed in float64)."""
    bins = hertz_to_mel(torch.linspace(0.0, SAMPLE_RATE / 2, num_spectrogram_bins, dtype=torch.float64)[1:])[:, None]
    edges = torch.linspace(hertz_to_mel(LOWER_EDGE_HERTZ), hertz_to_mel(UPPER_EDGE_HERTZ), NUM_MEL_BINS + 2, dtype=torch.float64)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    weights = torch.minimum((bins - lower) / (center - lower), (upper - bins) / (upper - center)).clamp(min=0.0)
    return F.pad(weights, (0, 0, 1, 0)).float()


class LogMelFrontend(nn.Module):
    """Raw 16 kHz audio -> normalized log-mel features (AlgoPerf's `MelFilterbankFrontend`).

    Frames of 25 ms every 10 ms (no padding at the end), HTK pre-emphasis 0.97, periodic Hann
    window, 512-point power spectrum, 80 mel bins over 125-7600 Hz, log floored at 1e-5, then
    per-bin standardization by LibriSpeech's statistics.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("window", torch.hann_window(FRAME_SIZE - 1, periodic=True), persistent=False)
        self.register_buffer("mel_weights", mel_weights(), persistent=False)
        self.register_buffer("mean", torch.tensor(LOG_MEL_MEAN), persistent=False)
        self.register_buffer("stddev", torch.tensor(LOG_MEL_STDDEV), persistent=False)

    def forward(self, audio: torch.Tensor, paddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) samples (int16 range) and paddings -> (B, F, 80) features and (B, F)
        paddings, F = (T - 401) // 160 + 1; a frame is padding only if all its samples are."""
        frames = (audio * (1.0 - paddings) * 2.0 ** -15).unfold(1, FRAME_SIZE, FRAME_STEP)  # (B, F, 401)
        emphasized = torch.cat([frames[..., :1] * (1.0 - PREEMPHASIS), frames[..., 1:-1] - PREEMPHASIS * frames[..., :-2]], dim=-1)
        power = torch.fft.rfft(emphasized * self.window, FFT_SIZE).abs() ** 2  # (B, F, 257)
        log_mel = torch.log((power @ self.mel_weights).clamp(min=MEL_FLOOR))
        return (log_mel - self.mean) / self.stddev, paddings.unfold(1, FRAME_SIZE, FRAME_STEP).amin(dim=-1)


def mask_spans(choose_range: torch.Tensor, mask_size: int, count: int, max_length: int | None, max_ratio: float) -> torch.Tensor:
    """(B, mask_size) float: 0 inside any of `count` random spans per row, 1 elsewhere
    (AlgoPerf's `SpecAug._get_mask` with `masks_per_frame` 0).

    A span's length is uniform below `max_length` (or below `max_ratio * choose_range` when
    None), capped at `max_ratio * choose_range` (at least 1); its start is uniform such that
    it ends within the first `choose_range` positions.
    """
    batch, device = len(choose_range), choose_range.device
    limit = choose_range * max_ratio if max_length is None else torch.full((batch,), float(max_length), device=device)
    lengths = (limit[:, None] * torch.rand(batch, count, device=device)).long()
    lengths = torch.minimum(lengths, (max_ratio * choose_range[:, None]).long().clamp(min=1))
    starts = (torch.rand(batch, count, device=device) * (choose_range[:, None] - lengths + 1)).long()
    position = torch.arange(mask_size, device=device)
    inside = (position >= starts[..., None]) & (position < (starts + lengths)[..., None])  # (B, count, mask_size)
    return 1.0 - inside.any(dim=1).float()


class SpecAugment(nn.Module):
    """Random time and frequency masks on features during training (AlgoPerf's `SpecAug`
    with its ConformerConfig/DeepspeechConfig defaults: 27-bin frequency masks; time masks of
    up to 5% of the utterance's frames each)."""

    def __init__(self, freq_mask_count: int = 2, time_mask_count: int = 10, freq_mask_max_bins: int = 27, time_mask_max_ratio: float = 0.05):
        super().__init__()
        self.freq_mask_count, self.time_mask_count = freq_mask_count, time_mask_count
        self.freq_mask_max_bins, self.time_mask_max_ratio = freq_mask_max_bins, time_mask_max_ratio

    def forward(self, features: torch.Tensor, paddings: torch.Tensor) -> torch.Tensor:
        """(B, F, C) features, (B, F) paddings -> masked (B, F, C) features."""
        batch, frames, bins = features.shape
        if self.time_mask_count and self.time_mask_max_ratio > 0:
            lengths = (1 - paddings).sum(dim=1).long()
            features = features * mask_spans(lengths, frames, self.time_mask_count, None, self.time_mask_max_ratio)[:, :, None]
        if self.freq_mask_count and self.freq_mask_max_bins:
            choose = torch.full((batch,), bins, device=features.device)
            features = features * mask_spans(choose, bins, self.freq_mask_count, self.freq_mask_max_bins, 1.0)[:, None, :]
        return features

