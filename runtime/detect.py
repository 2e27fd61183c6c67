"""Keyword detection on a stream of per-chunk decisions, as the field does it (openWakeWord,
microWakeWord, kws_streaming): softmax probabilities smoothed over a window, a per-keyword threshold
held for `patience` consecutive chunks, a refractory period after a detection, a warm-up after a
reset while the pooling window fills; background classes never fire. numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DetectionConfig:
    threshold: dict[str, float]          # keyword -> threshold on the smoothed probability
    smoothing_chunks: int = 1
    patience: int = 1
    refractory_chunks: int = 0
    warmup_chunks: int = 0

    @classmethod
    def from_manifest(cls, manifest: dict, keywords: list[str] | None = None,
                      thresholds: dict[str, float] | None = None, **over) -> "DetectionConfig":
        """Defaults from the manifest's `detection` block, in chunks of the model's chunk length."""
        d = manifest.get("detection", {})
        sec = manifest["chunk"] / manifest["sample_rate"]
        labels = manifest["labels"]
        background = set(d.get("background", []))
        kws = keywords or [lab for lab in labels if lab not in background]
        unknown = [k for k in kws if k not in labels]
        if unknown:
            raise ValueError(f"keyword(s) not in the model's labels: {', '.join(unknown)} (labels: {', '.join(labels)})")
        base = float(d.get("threshold", 0.8))
        th = {k: base for k in kws}
        th.update(thresholds or {})
        to_chunks = lambda s: max(0, int(round(s / sec)))  # noqa: E731
        cfg = cls(th, max(1, to_chunks(d.get("smoothing_s", 0.1))), int(d.get("patience", 2)),
                  to_chunks(d.get("refractory_s", 1.0)), to_chunks(d.get("warmup_s", 0.5)))
        for k, v in over.items():
            if v is not None:
                setattr(cfg, k, v)
        return cfg


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


@dataclass
class Detector:
    """Detection state for B streams; update() once per chunk with the model's logits (B, K)."""
    labels: list[str]
    cfg: DetectionConfig
    batch: int = 1

    def __post_init__(self) -> None:
        self.kw_index = np.array([self.labels.index(k) for k in self.cfg.threshold])
        self.thresh = np.array(list(self.cfg.threshold.values()))
        self.reset()

    def reset(self, stream: int | None = None) -> None:
        """A fresh stream (all, or one): warm-up starts again."""
        K = len(self.kw_index)
        if stream is None:
            self.window = np.zeros((self.batch, self.cfg.smoothing_chunks, K))
            self.filled = np.zeros(self.batch, int)
            self.run = np.zeros((self.batch, K), int)
            self.since_fire = np.full(self.batch, 10 ** 9)
            self.chunks = np.zeros(self.batch, int)
        else:
            self.window[stream] = 0
            self.filled[stream] = self.run[stream] = self.chunks[stream] = 0
            self.since_fire[stream] = 10 ** 9

    def update(self, logits: np.ndarray) -> list[tuple[int, str, float]]:
        """-> detections of this chunk: (stream, keyword, smoothed probability)."""
        p = softmax(np.asarray(logits, np.float64))[:, self.kw_index]        # (B, K)
        self.window = np.concatenate([self.window[:, 1:], p[:, None]], 1)
        self.filled = np.minimum(self.filled + 1, self.cfg.smoothing_chunks)
        smooth = self.window.sum(1) / self.filled[:, None]
        above = smooth >= self.thresh
        self.run = np.where(above, self.run + 1, 0)
        self.chunks += 1
        self.since_fire += 1
        events = []
        for b in range(p.shape[0]):
            if self.chunks[b] <= self.cfg.warmup_chunks or self.since_fire[b] <= self.cfg.refractory_chunks:
                continue
            ready = np.flatnonzero(self.run[b] >= self.cfg.patience)
            if ready.size:
                k = ready[np.argmax(smooth[b, ready])]
                events.append((b, self.labels[self.kw_index[k]], float(smooth[b, k])))
                self.since_fire[b] = 0
                self.run[b] = 0
        return events
