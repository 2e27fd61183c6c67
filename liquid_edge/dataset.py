"""Keyword data sets in the Google Speech Commands layout, read from a local folder (no network).

    ROOT/<word>/*.wav, ROOT/_background_noise_/*.wav, ROOT/validation_list.txt, ROOT/testing_list.txt

Tasks: "all" (every word folder is a class: the 35 words of v2) or "12" (ten keywords, `_unknown_`
for every other word, `_silence_` cut from the background noise), the two standard ones. The same
reader serves the synthetic set of `liquid-edge data synth`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .runtime.audio import AudioError, read_wav, resample, to_mono

SC12_WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
SPLITS = ("train", "validation", "test")


class DataError(ValueError):
    """A data folder that cannot be read as a keyword data set; the message is one line."""


@dataclass
class KeywordData:
    x: np.ndarray          # (N, length) float32
    y: np.ndarray          # (N,) int64
    labels: list[str]
    noise: list[np.ndarray]  # background noise recordings (for augmentation)


def _word_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))


def _split_of(root: Path) -> dict[str, str]:
    out = {}
    for split, name in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
        f = root / name
        if not f.is_file():
            raise DataError(f"{root}: no {name} (not a Speech Commands-layout folder)")
        for line in f.read_text().split():
            out[line.strip()] = split
    return out


def load_clip(path: Path, sample_rate: int, length: int) -> np.ndarray:
    try:
        raw, sr = read_wav(path)
    except AudioError as e:
        raise DataError(str(e)) from None
    x = resample(to_mono(raw), sr, sample_rate)
    if len(x) > length * 1.02:
        raise DataError(f"{path}: {len(x) / sample_rate:.2f} s long, longer than the {length / sample_rate:g} s clips of this task")
    return np.pad(x[:length], (0, max(0, length - len(x))))


def load(root: str | Path, split: str, task: str = "12", words: list[str] | None = None,
         sample_rate: int = 16000, length: int = 16000, silence_fraction: float = 0.1,
         max_per_class: int | None = None, seed: int = 0) -> KeywordData:
    """One split of a local Speech Commands-layout folder, loaded into memory."""
    root = Path(root)
    if split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    present = _word_dirs(root)
    if not present:
        raise DataError(f"{root}: no word folders (expected ROOT/<word>/*.wav)")
    membership = _split_of(root)
    if task == "all":
        labels, keymap = present, {w: i for i, w in enumerate(present)}
    elif task == "12":
        kws = [str(w) for w in words] if words else [w for w in SC12_WORDS if w in present]
        missing = [w for w in kws if w not in present]
        if missing or not kws:
            raise DataError(f"{root}: keyword folder(s) missing: {', '.join(missing) or 'all of ' + ', '.join(SC12_WORDS)}")
        labels = ["_silence_", "_unknown_"] + kws
        keymap = {w: (labels.index(w) if w in kws else 1) for w in present}
    else:
        raise DataError(f"task must be '12' or 'all', not {task!r}")
    rng = np.random.default_rng(seed)
    items = []
    for w in present:
        files = sorted((root / w).glob("*.wav"))
        chosen = [f for f in files if membership.get(f"{w}/{f.name}", "train") == split]
        if max_per_class:
            chosen = chosen[:max_per_class]
        items += [(f, keymap[w]) for f in chosen]
    if not items:
        raise DataError(f"{root}: no clips in the {split} split")
    x = np.stack([load_clip(f, sample_rate, length) for f, _ in items])
    y = np.array([c for _, c in items], np.int64)
    noise = [resample(to_mono(raw), sr, sample_rate)
             for raw, sr in map(read_wav, sorted((root / "_background_noise_").glob("*.wav")))]
    if task == "12":   # _silence_: cuts of background noise (zeros if there is none), as the standard task
        n_sil = max(1, int(silence_fraction * len(items)))
        sil = np.zeros((n_sil, length), np.float32)
        for i in range(n_sil):
            if noise:
                src = noise[i % len(noise)]
                s = int(rng.integers(0, max(1, len(src) - length)))
                sil[i, : len(src[s:s + length])] = src[s:s + length] * rng.uniform(0, 1)
        x, y = np.concatenate([x, sil]), np.concatenate([y, np.zeros(n_sil, np.int64)])
    return KeywordData(x.astype(np.float32), y, labels, noise)
