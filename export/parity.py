"""The parity harness: every stepwise backend against the convolution form, from a zero state.

For each chunk size T and backend, the same streams (random, plus audio if given) run chunk by chunk.
Compared with a float64 convolution-form reference (DESIGN.md section 4):
    features   per-sample features (the pool's input): max / mean abs error
    logits     the pooled decision after every chunk: max / mean abs error, top-1 agreement
    state      the final states against the same module run in float64: max abs drift relative to
               the state's scale (max(1, max |state|)), and the SSM state's drift per layer
A run fails when the logits error exceeds the tolerance (default 1e-4) or top-1 agreement drops.
"""
from __future__ import annotations

import copy
import tempfile
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..model import LiquidS4Classifier
from .backends import BACKENDS
from .convert import WindowedModel, reference_model, streaming_module

DEFAULT_CHUNKS = (1, 160, 1000)


@dataclass
class Row:
    backend: str
    chunk: int
    samples: int
    feat_max: float = float("nan")
    feat_mean: float = float("nan")
    logit_max: float = float("nan")
    logit_mean: float = float("nan")
    top1: float = float("nan")
    state_drift: float = float("nan")
    layer_drift: list[float] = field(default_factory=list)
    ok: bool = False
    skipped: str | None = None


@dataclass
class Report:
    rows: list[Row]
    tolerance: float
    liquid_mode: str
    samples: int
    notes: list[str]

    @property
    def ok(self) -> bool:
        ran = [r for r in self.rows if r.skipped is None]
        return bool(ran) and all(r.ok for r in ran)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "tolerance": self.tolerance, "liquid_mode": self.liquid_mode,
                "samples": self.samples, "notes": self.notes, "rows": [asdict(r) for r in self.rows]}


def reference_logits(ref: LiquidS4Classifier, feats: torch.Tensor, T: int, W: int) -> torch.Tensor:
    """Decoder output after every chunk end: mean of the last min(t, W) features (mean pool) or the
    last feature (last pool). feats (B, L, D) float64 -> (B, L/T, K)."""
    dec = ref.decoder[0].output_transform
    ends = torch.arange(T, feats.shape[1] + 1, T)
    if ref.cfg.pool == "last":
        return dec(feats[:, ends - 1])
    cs = torch.cat([torch.zeros_like(feats[:, :1]), feats.cumsum(1)], 1)
    starts = (ends - W).clamp(min=0)
    means = (cs[:, ends] - cs[:, starts]) / (ends - starts)[None, :, None].to(feats.dtype)
    return dec(means)


@torch.no_grad()
def stream(run, module, x: np.ndarray, states: list) -> tuple[np.ndarray, np.ndarray, list]:
    T = module.chunk
    feats, logits = [], []
    for i in range(0, x.shape[1], T):
        lo, f, states = run(np.ascontiguousarray(x[:, i:i + T]), states)
        feats.append(f)
        logits.append(lo)
    return np.concatenate(feats, 1), np.stack(logits, 1), states


@torch.no_grad()
def run_parity(model: LiquidS4Classifier, backends: list[str], chunks=DEFAULT_CHUNKS, samples: int | None = None,
               liquid_mode: str | None = None, audio: list[np.ndarray] | None = None, batch: int = 2,
               tolerance: float = 1e-4, max_calls: int = 4000, corrupt_state: float = 0.0, seed: int = 0,
               window: int | None = None, progress=None) -> Report:
    """Compare every backend with the convolution form. samples: stream length (default 10 x l_max)."""
    cfg = model.cfg
    L = samples or 10 * (cfg.l_max or 16000)
    g = np.random.default_rng(seed)
    x = (0.5 * g.standard_normal((batch, L))).astype(np.float32)
    for clip in audio or []:
        x = np.concatenate([x, np.resize(clip.astype(np.float32), (1, L))], 0)
    ref = reference_model(model, liquid_mode)
    notes = []
    windowed = liquid_mode == "window"
    f_ref = None if windowed else ref.features(torch.from_numpy(x).double())   # per model step
    rows = []
    for T in chunks:
        module = streaming_module(model, T, liquid_mode, window=window)
        n = min(L // T, max_calls if not windowed else max(1, max_calls // 40)) * T
        if n == 0:
            rows.append(Row("*", T, 0, skipped=f"stream of {L} samples is shorter than the chunk"))
            continue
        xs = x[:, :n]
        if windowed:
            r_logits, r_feats = _window_reference(ref, module, xs)
        else:
            hop = cfg.samples_per_step   # log-mel: one step per hop samples
            r_feats = f_ref[:, :n // hop]
            r_logits = reference_logits(ref, r_feats, T // hop, module.window)
        # the same module in float64: the states a perfect float32 backend would end in
        m64 = copy.deepcopy(module).double()
        _, _, st64 = stream(BACKENDS["torch"].runner(m64, x.shape[0], ""), m64, xs.astype(np.float64),
                            [s.numpy() for s in m64.initial_state(x.shape[0], torch.float64)])
        for name in backends:
            be = BACKENDS.get(name)
            if be is None:
                rows.append(Row(name, T, n, skipped=f"unknown backend (known: {', '.join(BACKENDS)})"))
                continue
            why = be.unavailable() or be.unsupported(module)
            if why:
                rows.append(Row(name, T, n, skipped=why))
                continue
            if progress:
                progress(f"{name}: chunk {T}, {n} samples")
            with tempfile.TemporaryDirectory() as tmp:
                run = be.runner(module, x.shape[0], tmp)
                st0 = [s.numpy() for s in module.initial_state(x.shape[0])]
                if corrupt_state:
                    st0 = [s + corrupt_state * g.standard_normal(s.shape).astype(np.float32) for s in st0]
                feats, logits, st = stream(run, module, xs, st0)
            rows.append(_compare(name, T, n, feats, logits, st, r_feats.numpy(), r_logits.numpy(), st64,
                                 module, tolerance))
    if liquid_mode == "causal" and cfg.liquid_mode == "official" and cfg.liquid_kernel is not None:
        notes.append(official_deviation(model, x))
    return Report(rows, tolerance, liquid_mode or "exact", L, notes)


def official_deviation(model: LiquidS4Classifier, x: np.ndarray) -> str:
    """How far the causal re-interpretation of an official liquid model is from its official forward,
    on clips of the training length cut from the parity streams."""
    L = min(model.cfg.l_max or x.shape[1], x.shape[1])
    clips = torch.from_numpy(x[:, : x.shape[1] // L * L]).double().reshape(-1, L)
    official = reference_model(model, "window")(clips)
    causal = reference_model(model, "causal")(clips)
    dev = (official - causal).abs().max().item()
    agree = (official.argmax(-1) == causal.argmax(-1)).double().mean().item()
    return (f"causal vs official forward on {clips.shape[0]} clips of {L} samples: max logit deviation "
            f"{dev:.3g}, top-1 agreement {agree:.1%} (measure accuracy on your data before deploying)")


def _window_reference(ref, module: WindowedModel, x: np.ndarray):
    """The model on the last W samples (zero-padded before the stream) at every chunk end."""
    T, W = module.chunk, module.window
    xp = torch.from_numpy(np.concatenate([np.zeros((x.shape[0], W), np.float32), x], 1)).double()
    logits, feats = [], []
    for end in range(W + T, xp.shape[1] + 1, T):
        f = ref.features(xp[:, end - W:end])
        logits.append(ref.decoder(f))
        feats.append(f[:, -T:])
    return torch.stack(logits, 1), torch.cat(feats, 1)


def _compare(name, T, n, feats, logits, states, r_feats, r_logits, st64, module, tol) -> Row:
    fe = np.abs(feats.astype(np.float64) - r_feats)
    le = np.abs(logits.astype(np.float64) - r_logits)
    # top-1 agreement only where the reference's decision is clear (near-ties flip on rounding)
    srt = np.sort(r_logits, -1)
    clear = (srt[..., -1] - srt[..., -2]) > 10 * tol
    agree = (logits.argmax(-1) == r_logits.argmax(-1))[clear]
    top1 = float(agree.mean()) if agree.size else 1.0
    drift = [np.abs(s.astype(np.float64) - r).max(axis=tuple(i for i in range(s.ndim) if i != 1))
             for s, r, nm in zip(states, st64, module.state_names) if nm == "ssm_state"]
    layer_drift = [float(v) for v in drift[0]] if drift else []
    # relative to each state's scale: the pool state holds sums over up to W samples
    state_drift = max(float(np.abs(s.astype(np.float64) - r).max() / max(1.0, np.abs(r).max()))
                      for s, r in zip(states, st64))
    ok = bool(le.max() <= tol and top1 == 1.0 and np.isfinite(le).all())
    return Row(name, T, n, float(fe.max()), float(fe.mean()), float(le.max()), float(le.mean()), top1,
               state_drift, layer_drift, ok)


def format_report(rep: Report) -> str:
    lines = [f"parity: {rep.liquid_mode} streaming vs the float64 convolution form, "
             f"tolerance {rep.tolerance:g} on logits", ""]
    hdr = f"{'backend':8s} {'chunk':>6s} {'samples':>8s} {'feat max':>9s} {'feat mean':>9s} {'logit max':>9s} " \
          f"{'logit mean':>10s} {'top-1':>6s} {'state drift':>11s}  result"
    lines += [hdr, "-" * len(hdr)]
    for r in rep.rows:
        if r.skipped:
            lines.append(f"{r.backend:8s} {r.chunk:6d} {'':>8s} skipped: {r.skipped}")
            continue
        lines.append(f"{r.backend:8s} {r.chunk:6d} {r.samples:8d} {r.feat_max:9.2e} {r.feat_mean:9.2e} "
                     f"{r.logit_max:9.2e} {r.logit_mean:10.2e} {r.top1:6.1%} {r.state_drift:11.2e}  "
                     f"{'ok' if r.ok else 'FAIL'}")
    per_layer = [r for r in rep.rows if r.layer_drift]
    if per_layer:
        lines += ["", "SSM state drift per layer (final state vs the same module in float64):"]
        for r in per_layer:
            lines.append(f"  {r.backend:8s} chunk {r.chunk:5d}: " + "  ".join(f"L{i} {d:.1e}" for i, d in enumerate(r.layer_drift)))
    lines += rep.notes
    lines.append("")
    lines.append("PASS" if rep.ok else "FAIL")
    return "\n".join(lines)
