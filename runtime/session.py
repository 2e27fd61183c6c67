"""A streaming session on an exported model: numpy in, numpy out, state carried explicitly. No torch.

The manifest (sidecar `<model>.json`, else the graph's metadata) names the states and their shapes;
a session pairs each `<state>_in` with its `<state>_out`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class ModelError(ValueError):
    """An exported model or manifest that cannot be used; the message is one line."""


def manifest_path(model: str | Path) -> Path:
    """X.onnx, X.npz (native) -> X.json; anything else (an engine, a temporary file) -> <name>.json."""
    return Path(model).with_suffix(".json") if Path(model).suffix in (".onnx", ".npz") else Path(str(model) + ".json")


def load_manifest(model: str | Path, metadata: dict | None = None) -> dict:
    """The sidecar manifest, else metadata (the graph's metadata_props, JSON-decoded)."""
    side = manifest_path(model)
    if side.is_file():
        try:
            man = json.loads(side.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelError(f"{side}: not a JSON manifest ({e})") from None
    elif metadata:
        man = metadata
    else:
        raise ModelError(f"{model}: no manifest ({side.name} missing and the model carries none)")
    need = ("sample_rate", "chunk", "states", "labels", "inputs", "outputs")
    missing = [k for k in need if k not in man]
    if missing or not isinstance(man.get("states"), list):
        raise ModelError(f"{side}: manifest lacks {', '.join(missing) or 'a state list'}")
    return man


class ManifestSession:
    """What every session (ONNX Runtime, TensorRT, native) reads from its manifest."""

    manifest: dict

    @property
    def chunk(self) -> int:
        return int(self.manifest["chunk"])

    @property
    def sample_rate(self) -> int:
        return int(self.manifest["sample_rate"])

    @property
    def labels(self) -> list[str]:
        return list(self.manifest["labels"])

    def initial_state(self, batch: int = 1) -> list[np.ndarray]:
        fixed = self.manifest.get("batch")
        if isinstance(fixed, int) and batch != fixed:
            raise ModelError(f"model was exported for batch {fixed}, not {batch} (export with --batch dynamic)")
        return [np.zeros([batch, *s["shape"][1:]], np.float32) for s in self.manifest["states"]]


class OnnxStream(ManifestSession):
    """An ONNX Runtime session on a liquid-edge step graph."""

    backend = "onnxruntime"

    def __init__(self, path: str | Path, threads: int = 1):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError("onnxruntime is not installed: pip install 'liquid-edge[onnx]'") from None
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: no such file")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ORT raises its own types for every kind of bad file
            raise ModelError(f"{path}: not a loadable ONNX model ({str(e).splitlines()[0][:120]})") from None
        meta = {k: json.loads(v) for k, v in self.session.get_modelmeta().custom_metadata_map.items()
                if _is_json(v)}
        self.manifest = load_manifest(path, meta)
        self._check_io()

    def _check_io(self) -> None:
        """The manifest must describe this graph: the same inputs, chunk and state shapes."""
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        want = {"samples": [None, self.manifest["chunk"]]}
        want.update({s["input"]: s["shape"] for s in self.manifest["states"]})
        if set(shapes) != set(want):
            raise ModelError(f"manifest and graph disagree on inputs: graph {sorted(shapes)}, manifest {sorted(want)}")
        for name, shape in shapes.items():
            if [d for d in shape[1:]] != [d for d in want[name][1:]]:
                raise ModelError(f"manifest and graph disagree on {name}: graph {shape}, manifest {want[name]}"
                                 + (" (chunk)" if name == "samples" else ""))
        sr = self.manifest["sample_rate"]
        if not isinstance(sr, int) or sr <= 0:
            raise ModelError(f"manifest sample_rate {sr!r} is not a positive integer")

    def step(self, samples: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """samples (B, chunk) float32 -> logits (B, K), features (B, chunk, D), new states."""
        feeds = {"samples": np.ascontiguousarray(samples, dtype=np.float32)}
        feeds.update({s["input"]: st for s, st in zip(self.manifest["states"], states)})
        outs = self.session.run(["logits", "features"] + [s["output"] for s in self.manifest["states"]], feeds)
        return outs[0], outs[1], outs[2:]


def _is_json(v: str) -> bool:
    try:
        json.loads(v)
        return True
    except ValueError:
        return False
