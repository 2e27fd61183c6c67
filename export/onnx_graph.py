"""The stepwise module as an ONNX graph, with its manifest.

Graph contract (DESIGN.md section 5): real-valued, float32 I/O, opset 17, batch-first, static chunk,
fixed or dynamic batch. Inputs `samples` (B, T) and one `<state>_in` per packed state; outputs
`logits` (B, K), `features` (B, T, D) and `<state>_out` mirroring each input. The manifest (sidecar
JSON, and the same facts JSON-encoded in the graph's metadata_props) is all a runtime needs.
"""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import torch

from .. import __version__
from ..checkpoint import atomic_write

OPSET = 17
FORMAT = "liquid-edge-onnx/1"
DEFAULT_DETECTION = {
    "threshold": 0.8,          # on the smoothed softmax probability of a keyword
    "smoothing_s": 0.1,        # moving average of probabilities over this much audio
    "patience": 2,             # consecutive chunks at or above threshold
    "refractory_s": 1.0,       # no second detection of any keyword for this long
    "warmup_s": 0.5,           # nothing fires this soon after a reset (the pool window is filling)
    "background": ["_silence_", "_unknown_", "_background_noise_", "silence", "unknown"],
}


def io_names(state_names: list[str]) -> tuple[list[str], list[str]]:
    return (["samples"] + [f"{s}_in" for s in state_names],
            ["logits", "features"] + [f"{s}_out" for s in state_names])


def manifest_for(module: torch.nn.Module, batch: int | None, precision: str, source: dict) -> dict:
    cfg = module.cfg
    B = "batch" if batch is None else batch
    shapes = module.state_shapes(1)
    states = [{"name": n, "input": f"{n}_in", "output": f"{n}_out", "shape": [B, *s[1:]], "dtype": "float32"}
              for n, s in shapes.items()]
    return {
        "format": FORMAT,
        "liquid_edge_version": __version__,
        "opset": OPSET,
        "sample_rate": cfg.sample_rate,
        "chunk": module.chunk,
        "batch": "dynamic" if batch is None else batch,
        "precision": precision,
        "inputs": [{"name": "samples", "shape": [B, module.chunk], "dtype": "float32"}]
                  + [{"name": s["input"], "shape": s["shape"], "dtype": "float32"} for s in states],
        "outputs": [{"name": "logits", "shape": [B, cfg.d_output], "dtype": "float32"},
                    {"name": "features", "shape": [B, module.steps, cfg.d_model], "dtype": "float32"}]
                   + [{"name": s["output"], "shape": s["shape"], "dtype": "float32"} for s in states],
        "states": states,
        "labels": cfg.labels or [str(i) for i in range(cfg.d_output)],
        "pooling": {"mode": cfg.pool, "window": module.window},
        "macs_per_sample": module.macs_per_sample()["recurrent"],
        "detection": DEFAULT_DETECTION,
        "liquid_mode": source.get("liquid_mode", "exact"),
        "source": source,
        "model_config": cfg.to_dict(),
    }


def export_onnx(module: torch.nn.Module, path: str | Path, batch: int | None = 1, precision: str = "fp32",
                source: dict | None = None) -> dict:
    """Write module as ONNX at path (atomically) with metadata; returns the manifest.

    batch None: dynamic batch axis. precision "fp16": the module computes its projections and kernel
    taps in fp16; I/O, the state recursion and the states stay fp32.
    """
    import onnx
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"precision must be fp32 or fp16, not {precision!r}")
    if precision == "fp16":
        module.half_compute()
    names_in, names_out = io_names(module.state_names)
    b = 2 if batch is None else batch
    args = (torch.zeros(b, module.chunk), *module.initial_state(b))
    dyn = {n: {0: "batch"} for n in names_in + names_out} if batch is None else None
    t0 = time.perf_counter()
    tmp_graph = Path(path).with_name(Path(path).name + ".trace.part")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(tmp_graph), input_names=names_in, output_names=names_out,
                              dynamic_axes=dyn, opset_version=OPSET, dynamo=False, do_constant_folding=True)
        graph = onnx.load(str(tmp_graph))
    finally:
        tmp_graph.unlink(missing_ok=True)
    manifest = manifest_for(module, batch, precision, source or {})
    _set_io_shapes(graph, manifest)
    manifest["export_seconds"] = round(time.perf_counter() - t0, 3)
    for k, v in manifest.items():
        graph.metadata_props.add(key=k, value=json.dumps(v))
    graph.producer_name, graph.producer_version = "liquid-edge", __version__
    onnx.checker.check_model(graph, full_check=True)
    atomic_write(path, lambda tmp: onnx.save(graph, tmp))
    return manifest


def _set_io_shapes(graph, manifest: dict) -> None:
    """Stamp the manifest's shapes on the graph's inputs and outputs: tracing can leave axes that are
    static in fact (chunk, state sizes) symbolic; only the batch axis may stay symbolic."""
    specs = {s["name"]: s["shape"] for s in manifest["inputs"] + manifest["outputs"]}
    for v in list(graph.graph.input) + list(graph.graph.output):
        dims = v.type.tensor_type.shape.dim
        for d, want in zip(dims, specs[v.name]):
            if isinstance(want, int):
                d.dim_value = want
            else:
                d.dim_param = want


def read_metadata(path: str | Path) -> dict:
    import onnx
    g = onnx.load(str(path), load_external_data=False)
    return {p.key: json.loads(p.value) for p in g.metadata_props}
