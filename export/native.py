"""`liquid-edge export --target native`: the stepwise form's constants for the fused C kernel.

The kernel (runtime/native.c) runs the recurrence s = A s + B v, y = C s + D u sample by sample
instead of the chunk operators of the graph, so it takes the stepwise module's dense real system,
folded norms, liquid coefficients and projections as they are (float64 at conversion, stored
float32), in the layouts it vectorises over: channels last. Written to NAME.npz + NAME.json only
after a parity run against the torch stepwise module.
"""
from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import atomic_write, load_checkpoint, sha256
from ..runtime.native import CMAX, FORMAT, NMAX, PMAX, VL, NativeStream
from ..runtime.session import manifest_path
from .onnx_graph import manifest_for
from .stepwise import Affine, FeatureLayerNorm, StepwiseModel, StreamingError


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).numpy().copy()


def _norm(mod) -> tuple[dict, np.ndarray, np.ndarray]:
    if isinstance(mod, Affine):
        return {"norm": "affine", "eps": 0.0}, _np(mod.scale[:, 0]), _np(mod.shift[:, 0])
    if isinstance(mod, FeatureLayerNorm):
        return {"norm": "layer", "eps": float(mod.eps)}, _np(mod.weight[:, 0]), _np(mod.bias[:, 0])
    return {"norm": "none", "eps": 0.0}, None, None


def unsupported_reason(module) -> str | None:
    """Why the kernel cannot run this module, in one line; None when it can."""
    if not isinstance(module, StepwiseModel):
        return "the native kernel runs the exact stepwise form; windowed inference exports to ONNX"
    cfg = module.cfg
    if module.precision != "fp32":
        return "the native kernel computes in fp32"
    if cfg.d_model % VL:
        return f"the native kernel needs d_model divisible by {VL}, not {cfg.d_model}"
    if module.n > NMAX or cfg.channels > CMAX or (cfg.liquid_kernel and cfg.liquid_degree > PMAX):
        return (f"the native kernel takes at most {NMAX} real states, {CMAX} channels and liquid degree {PMAX} "
                f"(this model: {module.n}, {cfg.channels}, {cfg.liquid_degree})")
    return None


def native_arrays(step: StepwiseModel) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) for the kernel: per layer dA = A - I (n, n, H), B (n, H), C (C, n, H), D (C, H), the
    liquid coefficients (PB: (P-1, C, H); KB: (P-1, H)), the GLU projection transposed (C·H, 2H)."""
    why = unsupported_reason(step)
    if why:
        raise StreamingError(why)
    cfg = step.cfg
    H = cfg.d_model
    arrays, layers = {}, []
    for i, ly in enumerate(step.layers):
        p = f"layer{i}."
        info, a, b = _norm(ly.norm)
        arrays[p + "norm_a"], arrays[p + "norm_b"] = (a, b) if a is not None else (np.ones(H, np.float32), np.zeros(H, np.float32))
        arrays[p + "dA"] = _np(ly.ssm_dA.permute(1, 2, 0))
        arrays[p + "B"] = _np(ly.ssm_B.t())
        arrays[p + "C"] = _np(ly.ssm_C.permute(0, 2, 1))
        arrays[p + "D"] = _np(ly.ssm_D)
        if ly.kind is not None:
            name = "s" if ly.kind == "kb" else "c"
            arrays[p + "lc"] = np.stack([_np(getattr(ly, f"{name}{k}")[:, 0]).reshape(-1, H) for k in range(ly.degree - 1)])
            if ly.kind == "kb":
                arrays[p + "lc"] = arrays[p + "lc"][:, 0]
        arrays[p + "Wo"] = _np(ly.Wo.t())
        arrays[p + "bo"] = _np(ly.bo[:, 0])
        layers.append({**info, "liquid": ly.kind, "degree": ly.degree, "contract": ly.lcontract})
    fn, fa, fb = _norm(step.final_norm)
    arrays["final_a"] = fa if fa is not None else np.ones(H, np.float32)
    arrays["final_b"] = fb if fb is not None else np.zeros(H, np.float32)
    arrays["enc_W"], arrays["enc_b"] = _np(step.We.t()), _np(step.be[:, 0])
    arrays["dec_W"], arrays["dec_b"] = _np(step.Wd), _np(step.bd)
    if cfg.features == "logmel":
        fe = step.frontend
        arrays["fe_cos"], arrays["fe_sin"], arrays["fe_mel"] = _np(fe.cos), _np(fe.sin), _np(fe.mel)
    meta = {"H": H, "n": step.n, "C": cfg.channels, "L": len(step.layers), "d_in": cfg.d_input, "K": cfg.d_output,
            "prenorm": cfg.prenorm, "features": cfg.features, "hop": cfg.hop, "win": cfg.win, "steps": step.steps,
            "pool": cfg.pool, "window": step.window, "layers": layers, "final_norm": fn}
    return meta, arrays


def save_native(step: StepwiseModel, path: str | Path, source: dict | None = None) -> dict:
    """Write NAME.npz atomically; returns the manifest (written by the caller, beside it)."""
    t0 = time.perf_counter()
    meta, arrays = native_arrays(step)
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(meta)), **arrays)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(buf.getvalue()))
    man = manifest_for(step, None, "fp32", source or {})
    man.pop("opset")
    man["format"] = FORMAT
    man["export_seconds"] = round(time.perf_counter() - t0, 3)
    return man


def export_native_checked(ckpt: str | Path, out: str | Path, chunk: int = 160, liquid_mode: str | None = None,
                          window: int | None = None, official_aux: str | Path | None = None, tol: float = 1e-4,
                          log=print) -> tuple[Path, dict]:
    """Checkpoint -> NAME.npz + NAME.json, after a parity run against the torch stepwise module."""
    from .convert import streaming_module
    from .pipeline import ExportError, output_path, parity_chunks, stream_parity, with_sidecar
    model = load_checkpoint(ckpt, official_aux)
    module = streaming_module(model, chunk, liquid_mode, window)
    final = output_path(out, ckpt, chunk, "native", ".npz")
    source = {"checkpoint": Path(ckpt).name, "sha256": sha256(ckpt), "liquid_mode": liquid_mode or "exact"}
    log(f"exporting {Path(ckpt).name} for the native CPU kernel: chunk {chunk}")
    tmp = final.with_name(f".{final.name}.check.npz")
    try:
        man = save_native(module, tmp, source)
        n_chunks = parity_chunks(module)
        par = stream_parity(module, NativeStream(with_sidecar(tmp, man)), 2, n_chunks)
        log(f"native parity over {n_chunks} chunks: max |logits| error {par['logits']:.2e} (tolerance {tol:g})")
        if not par["logits"] <= tol:
            raise ExportError(f"native parity failed: max logit error {par['logits']:.3g} > {tol:g}")
        man["parity"] = dict(par, tolerance=tol, against="torch stepwise module (fp32)")
        os.replace(tmp, final)   # written atomically beside it by save_native
        atomic_write(manifest_path(final), lambda p: Path(p).write_text(json.dumps(man, indent=1)))
        return final, man
    finally:
        tmp.unlink(missing_ok=True)
        manifest_path(tmp).unlink(missing_ok=True)
