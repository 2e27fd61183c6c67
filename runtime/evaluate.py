"""Evaluation in the field's terms, on an exported model (numpy + the backend).

    accuracy, reset per clip    every test clip streamed from a zero state (kws_streaming "non-streaming")
    accuracy, carried           the clips streamed back to back with the state carried across them,
                                the decision taken after each clip's last chunk ("streaming")
    FRR vs FA/hour              on long recordings with marked words (`_long_/*.wav` + `.txt`): a
                                keyword is caught when it is detected between its start and 1 s after
                                its end; any other detection is a false accept
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .detect import DetectionConfig, Detector
from .stream import chunks, file_source


@dataclass
class LongResult:
    thresholds: list[float]
    frr: list[float]
    fa_per_hour: list[float]
    keywords: int
    hours: float


def accuracy_reset(model, x: np.ndarray, y: np.ndarray, batch: int = 64) -> float:
    """x (N, L) at the model's rate, L a multiple of the chunk."""
    fixed = model.manifest.get("batch")
    bsz = fixed if isinstance(fixed, int) else batch
    correct = 0
    for i in range(0, len(y), bsz):
        xb = x[i:i + bsz]
        n = len(xb)
        if n < bsz:
            xb = np.concatenate([xb, np.zeros((bsz - n, x.shape[1]), np.float32)])
        st = model.initial_state(bsz)
        for t in range(0, x.shape[1], model.chunk):
            logits, _, st = model.step(xb[:, t:t + model.chunk], st)
        correct += int((logits[:n].argmax(-1) == y[i:i + n]).sum())
    return correct / len(y)


def accuracy_carried(model, x: np.ndarray, y: np.ndarray) -> float:
    st = model.initial_state(1)
    correct = 0
    for clip, label in zip(x, y):
        for t in range(0, len(clip), model.chunk):
            logits, _, st = model.step(clip[None, t:t + model.chunk], st)
        correct += int(logits[0].argmax() == label)
    return correct / len(y)


def long_logits(model, wav: Path) -> np.ndarray:
    """Per-chunk logits over a recording: (n_chunks, K)."""
    st = model.initial_state(1)
    out = []
    for c in chunks(file_source(wav), model.sample_rate, model.chunk):
        logits, _, st = model.step(c[None], st)
        out.append(logits[0])
    return np.array(out)


def read_marks(txt: Path) -> list[tuple[float, float, str]]:
    marks = []
    for line in txt.read_text().splitlines():
        if line.strip():
            s, e, w = line.split()[:3]
            marks.append((float(s), float(e), w))
    return marks


def frr_fa_curve(model, recordings: list[Path], base: DetectionConfig,
                 thresholds: np.ndarray = np.round(np.arange(0.3, 1.0, 0.05), 2)) -> LongResult:
    sec = model.chunk / model.sample_rate
    runs = [(long_logits(model, w), read_marks(w.with_suffix(".txt"))) for w in recordings]
    keywords = set(base.threshold)
    n_kw = sum(1 for _, marks in runs for m in marks if m[2] in keywords)
    hours = sum(len(lg) * sec for lg, _ in runs) / 3600
    frr, fah = [], []
    for th in thresholds:
        cfg = DetectionConfig({k: float(th) for k in keywords}, base.smoothing_chunks, base.patience,
                              base.refractory_chunks, base.warmup_chunks)
        missed, false = 0, 0
        for logits, marks in runs:
            det = Detector(model.labels, cfg, 1)
            events = [(i * sec + sec, kw) for i, lg in enumerate(logits) for _, kw, _ in det.update(lg[None])]
            used = set()
            for s, e, w in marks:
                if w not in keywords:
                    continue
                hit = next((j for j, (t, kw) in enumerate(events) if kw == w and s <= t <= e + 1.0 and j not in used), None)
                if hit is None:
                    missed += 1
                else:
                    used.add(hit)
            false += len(events) - len(used)
        frr.append(missed / max(1, n_kw))
        fah.append(false / max(hours, 1e-9))
    return LongResult([float(t) for t in thresholds], frr, fah, n_kw, hours)


def plot_curve(res: LongResult, path: str | Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(res.fa_per_hour, res.frr, "o-")
    for t, x, y in zip(res.thresholds[::2], res.fa_per_hour[::2], res.frr[::2]):
        ax.annotate(f"{t:g}", (x, y), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel("false accepts per hour")
    ax.set_ylabel("false reject rate")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
