"""An offline keyword data set from a real speech synthesiser (espeak-ng), in the Speech Commands layout.

    OUT/<word>/<voice>_<variant>_<n>.wav    16 kHz mono int16, 1 s, the word at a random offset
    OUT/_background_noise_/*.wav             generated noise (white, pink, brown, hum), 10 s each
    OUT/validation_list.txt, testing_list.txt  held-out voices *and* variants: training never hears them
    OUT/_long_/stream_NNN.wav + .txt         long recordings with words at known times, for evaluation

Voices are espeak-ng's built-in English voices; variants (`+m1`, `+f3`, `+klatt`, ...) change the
formant synthesiser; speed and pitch vary per clip.
"""
from __future__ import annotations

import random
import zlib
import shutil
import subprocess
import tempfile
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .runtime.audio import read_wav, resample

SR = 16000
VOICES = {"train": ["en-us", "en-gb", "en-gb-x-rp", "en-029", "en-gb-scotland", "en-us-nyc"],
          "validation": ["en-gb-x-gbclan"], "test": ["en-gb-x-gbcwmd"]}
UNKNOWN_WORDS = ["bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow"]


class SynthError(RuntimeError):
    """The synthesiser is missing or failed; the message is one line."""


def espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SynthError("espeak-ng is not installed: apt-get install espeak-ng (Debian/Ubuntu)")
    return exe


def variants() -> list[str]:
    """espeak-ng's voice variants, split three ways (train / validation / test) deterministically."""
    out = subprocess.run([espeak(), "--voices=variant"], capture_output=True, text=True).stdout.splitlines()[1:]
    names = sorted({line.split()[3].split("/")[-1] for line in out if len(line.split()) >= 4})
    return names or ["m1", "m2", "m3", "f1", "f2", "f3"]


def split_variants(names: list[str]) -> dict[str, list[str]]:
    rng = random.Random(1234)
    names = sorted(names)
    rng.shuffle(names)
    k = max(1, len(names) // 6)
    return {"validation": names[:k], "test": names[k:2 * k], "train": names[2 * k:]}


def say(word: str, voice: str, variant: str, speed: int, pitch: int) -> np.ndarray:
    """One utterance as float32 at 16 kHz, leading and trailing silence trimmed."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        r = subprocess.run([espeak(), "-v", f"{voice}+{variant}", "-s", str(speed), "-p", str(pitch),
                            "-w", f.name, word], capture_output=True, text=True)
        if r.returncode != 0:
            raise SynthError(f"espeak-ng failed for {word!r} ({voice}+{variant}): {r.stderr.strip()[:100]}")
        x, sr = read_wav(f.name)
    x = resample(x[:, 0], sr, SR)
    loud = np.flatnonzero(np.abs(x) > 0.02 * (np.abs(x).max() + 1e-9))
    return x[loud[0]:loud[-1] + 1] if loud.size else x


def write_wav(path: Path, x: np.ndarray, sr: int = SR) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())


def place(utt: np.ndarray, rng: np.random.Generator, length: int = SR) -> np.ndarray:
    """The utterance at a random offset in a clip of `length` samples, peak-normalised to 0.3-0.9."""
    utt = utt[:length]
    out = np.zeros(length, np.float32)
    start = int(rng.integers(0, length - len(utt) + 1))
    out[start:start + len(utt)] = utt * (rng.uniform(0.3, 0.9) / (np.abs(utt).max() + 1e-9))
    return out


def noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    w = rng.standard_normal(n)
    if kind == "white":
        x = w
    elif kind in ("pink", "brown"):
        f = np.fft.rfftfreq(n)
        f[0] = f[1]
        x = np.fft.irfft(np.fft.rfft(w) / (np.sqrt(f) if kind == "pink" else f), n)
    else:  # mains hum with harmonics and a little hiss
        t = np.arange(n) / SR
        x = sum(np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 6)) + 0.1 * w
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def synthesize(out: str | Path, words: list[str], per_word: int = 60, unknown_words: list[str] | None = None,
               per_unknown: int | None = None, long_streams: int = 2, seed: int = 0, progress=None) -> dict:
    """Write the data set; returns counts per split."""
    out = Path(out)
    espeak()
    unknown_words = UNKNOWN_WORDS if unknown_words is None else unknown_words
    per_unknown = per_unknown or max(1, per_word // 4)
    var = split_variants(variants())
    rng = np.random.default_rng(seed)
    jobs = []
    fractions = {"train": 0.7, "validation": 0.15, "test": 0.15}
    for word in words + [w for w in unknown_words if w not in words]:
        n = per_word if word in words else per_unknown
        for i in range(n):
            split = rng.choice(list(fractions), p=list(fractions.values()))
            voice = str(rng.choice(VOICES[split]))
            variant = str(rng.choice(var[split]))
            jobs.append((word, split, voice, variant, int(rng.integers(130, 220)), int(rng.integers(25, 75)), i))

    def make(job):
        word, split, voice, variant, speed, pitch, i = job
        utt = say(word, voice, variant, speed, pitch)
        clip = place(utt, np.random.default_rng([seed, i, zlib.crc32(word.encode())]))
        rel = f"{word}/{voice}_{variant}_{speed}_{pitch}_{i:04d}.wav"
        write_wav(out / rel, clip)
        return split, rel

    lists = {"validation": [], "test": []}
    counts = {"train": 0, "validation": 0, "test": 0}
    with ThreadPoolExecutor(4) as pool:
        for k, (split, rel) in enumerate(pool.map(make, jobs)):
            counts[split] += 1
            if split in lists:
                lists[split].append(rel)
            if progress and (k + 1) % 50 == 0:
                progress(k + 1, len(jobs))
    (out / "validation_list.txt").write_text("\n".join(sorted(lists["validation"])) + "\n")
    (out / "testing_list.txt").write_text("\n".join(sorted(lists["test"])) + "\n")
    for kind in ("white", "pink", "brown", "hum"):
        write_wav(out / "_background_noise_" / f"{kind}_noise.wav", noise(kind, 10 * SR, rng))
    for s in range(long_streams):
        long_stream(out / "_long_" / f"stream_{s:03d}", words, unknown_words, var["test"], rng)
    return counts


def long_stream(stem: Path, words: list[str], unknown: list[str], test_variants: list[str],
                rng: np.random.Generator, seconds: int = 60) -> None:
    """A recording of held-out voices: keywords and other words every ~2.5 s over noise.
    stem.txt lists `start_s end_s word` per utterance."""
    x = 0.01 * noise("pink", seconds * SR, rng)
    t, marks = 1.0, []
    while t < seconds - 2:
        word = str(rng.choice(words if rng.random() < 0.7 else unknown))
        utt = say(word, VOICES["test"][0], str(rng.choice(test_variants)), int(rng.integers(140, 200)), 50)
        i = int(t * SR)
        seg = utt[: seconds * SR - i] * (0.6 / (np.abs(utt).max() + 1e-9))
        x[i:i + len(seg)] += seg
        marks.append(f"{t:.3f} {t + len(seg) / SR:.3f} {word}")
        t += len(seg) / SR + rng.uniform(1.5, 3.0)
    write_wav(stem.with_suffix(".wav"), x)
    stem.with_suffix(".txt").write_text("\n".join(marks) + "\n")
