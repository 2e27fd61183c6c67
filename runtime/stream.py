"""Streaming exported models over audio sources: keyword spotting and clip classification. numpy only.

Sources are read in blocks of any size, resampled to the model's rate, cut into the model's chunks
and pushed through the step graph with the state carried; B sources run as one batch where the
model takes a dynamic batch (else one after another).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .audio import AudioError, StreamResampler, read_wav, to_mono
from .detect import DetectionConfig, Detector
from .session import ModelError, OnnxStream


EXPORTED = (".onnx", ".npz", ".engine", ".plan", ".trt")   # the suffixes open_model takes


def open_model(path: str | Path, threads: int = 1):
    """An exported model: .onnx through ONNX Runtime, .npz through the native CPU kernel, .engine /
    .plan through TensorRT."""
    path = Path(path)
    if path.suffix == ".onnx":
        return OnnxStream(path, threads)
    if path.suffix == ".npz":
        from .native import NativeStream
        return NativeStream(path, threads)
    if path.suffix in (".engine", ".plan", ".trt"):
        from .trt_session import TrtStream
        return TrtStream(path)
    raise ModelError(f"{path}: not an exported model (.onnx, a native .npz, or a TensorRT .engine with its .json manifest)")


@dataclass
class Source:
    """A named audio stream: blocks of samples (float32, mono) at `rate`."""
    name: str
    rate: int
    blocks: Iterator[np.ndarray]


def file_source(path: str | Path, block: int = 4096) -> Source:
    raw, sr = read_wav(path)
    x = to_mono(raw)
    if not np.isfinite(x).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    return Source(str(path), sr, (x[i:i + block] for i in range(0, len(x), block)))


def stdin_source(rate: int, dtype: str = "int16", block: int = 4096, stream=None) -> Source:
    """Raw mono PCM on standard input (int16 little-endian or float32)."""
    stream = stream or sys.stdin.buffer
    width = 2 if dtype == "int16" else 4

    def blocks():
        pending = b""
        while True:
            data = stream.read(block * width)
            if not data:
                return
            data = pending + data
            n = len(data) // width * width
            pending = data[n:]
            x = np.frombuffer(data[:n], "<i2" if dtype == "int16" else "<f4")
            x = x.astype(np.float32) / 32768.0 if dtype == "int16" else x.astype(np.float32)
            yield np.nan_to_num(x)        # a glitch in a live stream is silenced, not fatal
    return Source("stdin", rate, blocks())


def mic_source(rate: int, block: int = 1600, device=None) -> Source:
    try:
        import sounddevice as sd
    except (ImportError, OSError) as e:
        raise AudioError(f"microphone input needs sounddevice and PortAudio: pip install 'liquid-edge[mic]' "
                         f"and apt-get install libportaudio2 ({str(e).splitlines()[0]})") from None
    try:
        sd.check_input_settings(device=device, channels=1, samplerate=rate)
    except Exception as e:  # noqa: BLE001 - PortAudio reports missing devices in several ways
        raise AudioError(f"no usable microphone ({str(e).splitlines()[0]})") from None

    def blocks():
        with sd.InputStream(samplerate=rate, channels=1, blocksize=block, device=device, dtype="float32") as s:
            warned = False
            while True:
                x, overflow = s.read(block)
                if overflow and not warned:   # the stream hiccuped: say so once, keep going
                    print("warning: microphone overflow: audio was dropped", file=sys.stderr)
                    warned = True
                yield np.nan_to_num(x[:, 0])
    return Source("mic", rate, blocks())


def chunks(source: Source, rate: int, chunk: int) -> Iterator[np.ndarray]:
    """The source at the model's rate, cut into chunks; the last one zero-padded."""
    rs = StreamResampler(source.rate, rate)
    buf = np.zeros(0, np.float32)
    for block in source.blocks:
        buf = np.concatenate([buf, rs(block)])
        while len(buf) >= chunk:
            yield buf[:chunk]
            buf = buf[chunk:]
    buf = np.concatenate([buf, rs(np.zeros(0), final=True)])
    while len(buf) > 0:
        yield np.pad(buf[:chunk], (0, max(0, chunk - len(buf))))
        buf = buf[chunk:]


def spot(model, sources: list[Source], det: DetectionConfig, on_event, on_chunk=None) -> None:
    """Stream every source through the model; on_event(dict) for every detection."""
    fixed = model.manifest.get("batch")
    groups = [sources] if not isinstance(fixed, int) else [sources[i:i + fixed] for i in range(0, len(sources), fixed)]
    sec = model.chunk / model.sample_rate
    for group in groups:
        B = len(group) if not isinstance(fixed, int) else fixed
        its = [chunks(s, model.sample_rate, model.chunk) for s in group]
        states = model.initial_state(B)
        detector = Detector(model.labels, det, B)
        done = [False] * B
        n = 0
        while not all(done[:len(group)]):
            x = np.zeros((B, model.chunk), np.float32)
            for b, it in enumerate(its):
                if not done[b]:
                    c = next(it, None)
                    if c is None:
                        done[b] = True
                    else:
                        x[b] = c
            if all(done[:len(group)]):
                break
            logits, _, states = model.step(x, states)
            n += 1
            if on_chunk:
                on_chunk(n, logits)
            for b, kw, score in detector.update(logits):
                if b < len(group) and not done[b]:
                    on_event({"stream": group[b].name, "keyword": kw, "time": round(n * sec, 3), "score": round(score, 4)})


def classify_clip(model, x: np.ndarray) -> tuple[np.ndarray, int]:
    """Stream a clip at the model's rate from a zero state; logits after its last sample, and how many
    zeros were appended to fill the last chunk."""
    T = model.chunk
    pad = (-len(x)) % T
    x = np.pad(x.astype(np.float32), (0, pad))
    states = model.initial_state(1)
    logits = None
    for i in range(0, len(x), T):
        logits, _, states = model.step(x[None, i:i + T], states)
    return logits[0], pad
