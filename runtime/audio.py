"""Audio in: WAV files and arrays to mono float32 at the model's rate. numpy only (no torch)."""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np


class AudioError(ValueError):
    """Audio that cannot be used; the message is one line."""


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(samples (L, channels) float32 in [-1, 1], sample rate). int16/int32/float WAVs."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        import soundfile as sf
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except ImportError:
        x, sr = _read_wav_stdlib(path)
    except Exception as e:  # noqa: BLE001 - libsndfile's errors are many; all mean "unreadable"
        raise AudioError(f"{path}: unreadable audio ({str(e).strip().splitlines()[0][:120]})") from None
    if x.shape[0] == 0:
        raise AudioError(f"{path}: no samples")
    return x, int(sr)


def _read_wav_stdlib(path: Path) -> tuple[np.ndarray, int]:
    try:
        with wave.open(str(path), "rb") as w:
            sr, ch, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError) as e:
        raise AudioError(f"{path}: unreadable audio ({e})") from None
    if width != 2:
        raise AudioError(f"{path}: {8 * width}-bit WAV needs soundfile: pip install 'liquid-edge[audio]'")
    return np.frombuffer(raw, "<i2").reshape(-1, ch).astype(np.float32) / 32768.0, sr


def to_mono(x: np.ndarray) -> np.ndarray:
    """(L,) or (L, channels) -> (L,) float32: channels averaged; int16 scaled to [-1, 1]."""
    if x.dtype == np.int16:
        x = x.astype(np.float32) / 32768.0
    x = np.asarray(x, dtype=np.float32)
    return x.mean(axis=1) if x.ndim == 2 else x


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited resampling of a whole clip (FFT method). x (L,) -> (round(L*sr_out/sr_in),)."""
    if sr_in == sr_out:
        return x.astype(np.float32)
    n_out = int(round(len(x) * sr_out / sr_in))
    X = np.fft.rfft(x.astype(np.float64))
    Y = np.zeros(n_out // 2 + 1, dtype=complex)
    m = min(len(X), len(Y))
    Y[:m] = X[:m]
    return (np.fft.irfft(Y, n=n_out) * (n_out / len(x))).astype(np.float32)


def load_clip(path: str | Path, sample_rate: int) -> np.ndarray:
    """A .wav (any rate, any channels) or .npy of float samples -> mono float32 (L,) at sample_rate."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise AudioError(f"{path}: no such file")
        try:
            x = np.load(path, allow_pickle=False)
        except Exception as e:  # noqa: BLE001
            raise AudioError(f"{path}: not a .npy array ({e})") from None
        if x.ndim != 1 or not np.issubdtype(x.dtype, np.number):
            raise AudioError(f"{path}: expected a 1-D array of samples, got shape {x.shape} {x.dtype}")
        x = x.astype(np.float32)
    else:
        raw, sr = read_wav(path)
        x = resample(to_mono(raw), sr, sample_rate)
    if x.size == 0:
        raise AudioError(f"{path}: no samples")
    if not np.isfinite(x).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    return x


class StreamResampler:
    """Band-limited resampling of a stream that arrives in pieces (Kaiser-windowed sinc).

    Output sample j sits at input position j·sr_in/sr_out whatever the piece sizes, so how a
    stream is split never changes what comes out.
    """

    def __init__(self, sr_in: int, sr_out: int, half_width: int = 16):
        self.ratio = sr_in / sr_out
        self.cutoff = min(1.0, 1.0 / self.ratio)
        self.W = int(np.ceil(half_width / self.cutoff))
        self.buf = np.zeros(self.W, np.float64)     # leading zeros: the stream starts silent
        self.offset = -self.W                        # absolute input index of buf[0]
        self.next_out = 0

    def __call__(self, x: np.ndarray, final: bool = False) -> np.ndarray:
        if self.ratio == 1.0:
            return np.asarray(x, np.float32)
        self.buf = np.concatenate([self.buf, np.asarray(x, np.float64)])
        if final:
            self.buf = np.concatenate([self.buf, np.zeros(self.W)])
        end = self.offset + len(self.buf)            # input samples available: [offset, end)
        last = int(np.floor((end - self.W - 1) / self.ratio))
        if last < self.next_out:
            return np.zeros(0, np.float32)
        j = np.arange(self.next_out, last + 1)
        t = j * self.ratio                           # input positions
        base = np.floor(t).astype(int)
        k = np.arange(-self.W + 1, self.W + 1)
        idx = base[:, None] + k[None, :]             # (n, 2W) absolute input indices
        d = t[:, None] - idx
        win = np.kaiser(2 * self.W + 1, 8.0)[np.clip(np.round(d + self.W).astype(int), 0, 2 * self.W)]
        w = self.cutoff * np.sinc(self.cutoff * d) * win
        y = (self.buf[idx - self.offset] * w).sum(1)
        self.next_out = last + 1
        keep = int(np.floor(self.next_out * self.ratio)) - self.W - self.offset
        if keep > 0:
            self.buf, self.offset = self.buf[keep:], self.offset + keep
        return y.astype(np.float32)
