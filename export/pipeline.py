"""`liquid-edge export`: checkpoint -> stepwise module -> checked ONNX graph (-> engine).

Nothing is written under its final name until it has passed every check: the graph is exported to
a temporary file, checked (onnx.checker full check, the static TensorRT check, an ONNX Runtime
parity run against the torch stepwise module), then renamed; the manifest follows the same way.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import atomic_write, load_checkpoint, sha256
from ..runtime.session import OnnxStream, manifest_path
from .convert import streaming_module
from .onnx_graph import export_onnx
from .stepwise import StreamingError
from .trt_compat import check_graph

DEFAULT_TOL = {"fp32": 1e-4, "fp16": 2e-2}


class ExportError(RuntimeError):
    """Export cannot proceed or a check failed; the message is one line."""


@dataclass
class ExportResult:
    onnx_path: Path
    manifest: dict
    parity: dict
    stats: dict = field(default_factory=dict)


def output_path(out: str | Path, ckpt: str | Path, chunk: int, precision: str, suffix: str = ".onnx") -> Path:
    out = Path(out)
    if out.suffix in (".onnx", ".engine", ".ep", ".pt2", ".npz"):
        return out.with_suffix(suffix)
    return out / f"{Path(ckpt).stem}-c{chunk}-{precision}{suffix}"


def build_module(model, chunk: int, liquid_mode: str | None, window: int | None):
    """The module to export; StreamingError (one line) when the model cannot stream as asked."""
    from .window import graph_form   # windowed inference: direct convolution, no FFT
    return graph_form(streaming_module(model, chunk, liquid_mode, window))


def parity_chunks(module) -> int:
    """Chunks an export's parity run streams: long enough to wrap the pool window once."""
    return min(64, max(4, module.window // module.chunk + 2))


def with_sidecar(path: Path, manifest: dict) -> Path:
    """Write the manifest beside an exported file (the sessions read it from there); returns path."""
    manifest_path(path).write_text(json.dumps(manifest))
    return path


def open_exported(module, path: Path, threads: int = 1):
    """Export module to path, unchecked (.onnx: ONNX Runtime, dynamic batch; .npz: the native kernel),
    with its manifest beside it, and open it as a device would: for benchmarks and the parity harness."""
    from ..runtime.stream import open_model
    from .native import save_native
    man = export_onnx(module, path, batch=None) if Path(path).suffix == ".onnx" else save_native(module, path)
    return open_model(with_sidecar(Path(path), man), threads)


@torch.no_grad()
def stream_parity(module, sess, batch: int, chunks: int, seed: int = 0) -> dict:
    """Stream the same random input through the torch module and a session (ONNX Runtime, the native
    kernel); max abs differences of logits, features and states (relative to the state's scale)."""
    g = np.random.default_rng(seed)
    st_t, st_s = module.initial_state(batch), sess.initial_state(batch)
    err = {"logits": 0.0, "features": 0.0, "state": 0.0}
    for _ in range(chunks):
        x = (0.5 * g.standard_normal((batch, module.chunk))).astype(np.float32)
        lt, ft, *st_t = module(torch.from_numpy(x), *st_t)
        lo, fo, st_s = sess.step(x, st_s)
        err["logits"] = max(err["logits"], float(np.abs(lt.numpy() - lo).max()))
        err["features"] = max(err["features"], float(np.abs(ft.numpy() - fo).max()))
        err["state"] = max(err["state"], max(float(np.abs(a.numpy() - b).max() / max(1.0, np.abs(a.numpy()).max()))
                                             for a, b in zip(st_t, st_s)))
    return {**err, "chunks": chunks, "batch": batch}


def export_onnx_checked(ckpt: str | Path, out: str | Path, chunk: int = 160, batch: int | None = 1,
                        precision: str = "fp32", liquid_mode: str | None = None, window: int | None = None,
                        official_aux: str | Path | None = None, tol: float | None = None, log=print) -> ExportResult:
    tol = DEFAULT_TOL[precision] if tol is None else tol
    model = load_checkpoint(ckpt, official_aux)
    module = build_module(model, chunk, liquid_mode, window)
    reference = build_module(model, chunk, liquid_mode, window) if precision == "fp16" else module
    final = output_path(out, ckpt, chunk, precision)
    final.parent.mkdir(parents=True, exist_ok=True)
    source = {"checkpoint": Path(ckpt).name, "sha256": sha256(ckpt), "liquid_mode": liquid_mode or "exact"}
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        t0 = time.perf_counter()
        log(f"exporting {Path(ckpt).name}: chunk {chunk}, batch {batch or 'dynamic'}, {precision}")
        manifest = export_onnx(module, tmp, batch, precision, source)
        export_s = time.perf_counter() - t0
        import onnx
        graph = onnx.load(str(tmp))
        problems = check_graph(graph)
        if problems:
            raise ExportError(f"graph is not TensorRT-compatible: {problems[0]} ({len(problems)} problem(s))")
        log("checked: onnx.checker (full), TensorRT 10 operator/type/shape check")
        n_chunks = parity_chunks(module)
        par = stream_parity(reference, OnnxStream(with_sidecar(tmp, manifest)), 2 if batch is None else batch, n_chunks)
        log(f"ONNX Runtime parity over {n_chunks} chunks: max |logits| error {par['logits']:.2e} (tolerance {tol:g})")
        if not par["logits"] <= tol:
            raise ExportError(f"ONNX Runtime parity failed: max logit error {par['logits']:.3g} > {tol:g}")
        manifest["parity"] = dict(par, tolerance=tol, against="torch stepwise module (fp32)")
        stats = {"file_bytes": tmp.stat().st_size, "nodes": len(graph.graph.node), "export_seconds": round(export_s, 2)}
        manifest["graph"] = stats
        os.replace(tmp, final)
        atomic_write(manifest_path(final), lambda p: Path(p).write_text(json.dumps(manifest, indent=1)))
        return ExportResult(final, manifest, par, stats)
    finally:
        tmp.unlink(missing_ok=True)
        manifest_path(tmp).unlink(missing_ok=True)
