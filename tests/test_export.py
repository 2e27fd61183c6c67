"""ONNX export: ONNX Runtime parity, manifest and metadata, the TensorRT checks, atomic writes."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto as TP
from onnx import helper

from conftest import random_model
from liquid_edge.checkpoint import save_checkpoint, sha256
from liquid_edge.cli import main
from liquid_edge.export import pipeline
from liquid_edge.export.parity import run_parity
from liquid_edge.export.tensorrt import build_options, load_tensorrt, sidecar, trtexec_command, TensorRTUnavailable
from liquid_edge.export.trt_compat import check_graph
from liquid_edge.runtime.session import OnnxStream

MODELS = {
    "plain-bn": dict(liquid_kernel=None),
    "pb2-bn": dict(liquid_kernel="polyb"),
    "kb2-ln": dict(liquid_kernel="kb", norm="layer"),
    "pb3-tanh-postnorm": dict(liquid_kernel="polyb", liquid_degree=3, lcontract="tanh", prenorm=False),
    "kb3-ln": dict(liquid_kernel="kb", liquid_degree=3, norm="layer"),
}


@pytest.mark.parametrize("name", MODELS)
def test_onnx_runtime_equals_the_convolution_form(name):
    rep = run_parity(random_model(**MODELS[name]), ["onnx"], chunks=(16, 64), samples=640, max_calls=40)
    rows = [r for r in rep.rows if not r.skipped]
    assert len(rows) == 2 and rep.ok, [(r.chunk, r.logit_max) for r in rep.rows]
    assert all(r.logit_max < 1e-4 and r.feat_max < 1e-4 for r in rows)


@pytest.mark.parametrize("precision,batch", [("fp32", "1"), ("fp32", "dynamic"), ("fp16", "1"), ("fp16", "dynamic")])
def test_export_command_writes_checked_graph_and_manifest(tmp_path, precision, batch):
    m = random_model(liquid_kernel="polyb", labels=list("abcde"))
    save_checkpoint(m, tmp_path / "m.pt")
    r = CliRunner().invoke(main, ["export", str(tmp_path / "m.pt"), "-o", str(tmp_path / "out"), "--chunk", "32",
                                  "--batch", batch, "--precision", precision])
    assert r.exit_code == 0, r.output
    onnx_path = tmp_path / "out" / f"m-c32-{precision}.onnx"
    man = json.loads(onnx_path.with_suffix(".json").read_text())
    graph = onnx.load(str(onnx_path))
    onnx.checker.check_model(graph, full_check=True)
    meta = {p.key: json.loads(p.value) for p in graph.metadata_props}
    for k, v in meta.items():   # the sidecar carries every fact of the metadata (and the export checks)
        assert man[k] == v, k
    assert man["sample_rate"] == 16000 and man["chunk"] == 32 and man["labels"] == list("abcde")
    assert man["source"]["sha256"] == sha256(tmp_path / "m.pt") and man["liquid_edge_version"]
    assert man["pooling"] == {"mode": "mean", "window": 64} and man["detection"]["threshold"] > 0
    assert [s["name"] for s in man["states"]] == ["ssm_state", "liquid_state", "pool_state"]
    assert man["batch"] == ("dynamic" if batch == "dynamic" else 1) and man["precision"] == precision
    assert man["parity"]["logits"] <= man["parity"]["tolerance"]
    assert [i.name for i in graph.graph.input] == ["samples", "ssm_state_in", "liquid_state_in", "pool_state_in"]
    assert [o.name for o in graph.graph.output] == ["logits", "features", "ssm_state_out", "liquid_state_out", "pool_state_out"]
    assert check_graph(graph) == []
    # I/O stays fp32 in fp16 graphs; the state recursion too (its constants are float32)
    assert all(v.type.tensor_type.elem_type == TP.FLOAT for v in list(graph.graph.input) + list(graph.graph.output))
    w2 = [t for t in graph.graph.initializer if t.name.endswith("W2T")]
    assert w2 and all(t.data_type == TP.FLOAT for t in w2)
    if precision == "fp16":
        assert any(t.data_type == TP.FLOAT16 for t in graph.graph.initializer)
    # a dynamic-batch graph runs 3 streams; the state pairs in and out by name
    sess = OnnxStream(onnx_path)
    B = 3 if batch == "dynamic" else 1
    lo, f, st = sess.step(np.zeros((B, 32), np.float32), sess.initial_state(B))
    assert lo.shape == (B, 5) and f.shape == (B, 32, 8) and [s.shape for s in st] == [tuple([B, *s["shape"][1:]]) for s in man["states"]]


def _graph(dtype=TP.FLOAT, op="Add", dyn=False, init_dtype=None):
    shape = ["batch", "T" if dyn else 4]
    x = helper.make_tensor_value_info("x", dtype, shape)
    y = helper.make_tensor_value_info("y", dtype, shape)
    inits = []
    if init_dtype is not None:
        inits.append(helper.make_tensor("w", init_dtype, [1], [1.0] if init_dtype != TP.COMPLEX64 else [1 + 0j]))
    node = helper.make_node(op, ["x", "x"], ["y"]) if op != "Cast" else helper.make_node("Cast", ["x"], ["y"], to=TP.DOUBLE)
    return helper.make_model(helper.make_graph([node], "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)])


def test_compatibility_check_rejects_what_tensorrt_rejects():
    assert check_graph(_graph()) == []
    assert any("double" in p for p in check_graph(_graph(dtype=TP.DOUBLE)))
    assert any("double" in p for p in check_graph(_graph(init_dtype=TP.DOUBLE)))
    assert any("complex64" in p for p in check_graph(_graph(init_dtype=TP.COMPLEX64)))
    assert any("cast to double" in p for p in check_graph(_graph(op="Cast")))
    assert any("DFT" in p for p in check_graph(_graph(op="DFT")))
    assert any("axis 1 is dynamic" in p for p in check_graph(_graph(dyn=True)))
    assert any("INT64" in p for p in check_graph(_graph(dtype=TP.INT64)))


def test_interrupted_export_leaves_no_file(tmp_path, monkeypatch):
    save_checkpoint(random_model(), tmp_path / "m.pt")

    def interrupt(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(pipeline, "stream_parity", interrupt)
    with pytest.raises(KeyboardInterrupt):
        pipeline.export_onnx_checked(tmp_path / "m.pt", tmp_path / "out", 32, log=lambda m: None)
    assert list((tmp_path / "out").iterdir()) == []


def test_killed_export_never_leaves_a_file_that_looks_valid(tmp_path):
    save_checkpoint(random_model(d_model=16, n_layers=3), tmp_path / "m.pt")
    out = tmp_path / "out"
    for delay in (0.5, 1.5, 2.5):
        p = subprocess.Popen([sys.executable, "-m", "liquid_edge.cli", "export", str(tmp_path / "m.pt"), "-o", str(out),
                              "--chunk", "32"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        for f in out.glob("*") if out.exists() else []:
            assert f.name.endswith(".part") or f.suffix in (".onnx", ".json"), f
            if f.suffix == ".onnx":   # a final name only ever holds a complete, checked graph
                onnx.checker.check_model(onnx.load(str(f)), full_check=True)
        for f in out.glob("*.part") if out.exists() else []:
            f.unlink()


def test_bad_export_options_are_one_line(tmp_path):
    save_checkpoint(random_model(), tmp_path / "m.pt")
    for args, msg in [(["--batch", "lots"], "--batch"), (["--chunk", "7", "--window", "64"], "multiple of the chunk"),
                      (["--chunk", "0"], "positive")]:
        r = CliRunner().invoke(main, ["export", str(tmp_path / "m.pt"), "-o", str(tmp_path / "o")] + args)
        assert r.exit_code in (1, 2) and msg in r.output and "Traceback" not in r.output, (args, r.output)


# ---- TensorRT: everything around the build is testable here --------------------------------------------
MANIFEST = {"batch": "dynamic", "inputs": [{"name": "samples", "shape": ["batch", 160]},
                                           {"name": "ssm_state_in", "shape": ["batch", 6, 128, 6]}]}


def test_build_options_follow_the_tensorrt_version():
    o10 = build_options("10.3.0", "fp16", MANIFEST, opt_batch=4, max_batch=8)
    assert o10.strongly_typed and not o10.fp16_flag
    assert o10.profile["samples"] == {"min": [1, 160], "opt": [4, 160], "max": [8, 160]}
    o8 = build_options("8.6.2", "fp16", MANIFEST)
    assert not o8.strongly_typed and o8.fp16_flag
    fixed = build_options("10.0", "fp32", dict(MANIFEST, batch=2))
    assert fixed.profile["ssm_state_in"] == {"min": [2, 6, 128, 6], "opt": [2, 6, 128, 6], "max": [2, 6, 128, 6]}


def test_trtexec_command_and_sidecar():
    o = build_options("10.3", "fp16", MANIFEST, 1, 16, "/c/t.cache")
    cmd = trtexec_command("m.onnx", "m.engine", o)
    assert cmd.startswith("trtexec --onnx=m.onnx --saveEngine=m.engine --stronglyTyped ")
    assert "--minShapes=samples:1x160,ssm_state_in:1x6x128x6" in cmd and "--maxShapes=samples:16x160" in cmd
    assert "--timingCacheFile=/c/t.cache" in cmd and "--fp16" not in cmd
    assert "--fp16" in trtexec_command("m.onnx", "m.engine", build_options("8.5", "fp16", MANIFEST))
    side = sidecar({"chunk": 160}, o, "10.3.0", {"name": "Orin", "compute_capability": "8.7"})
    assert side["tensorrt"]["version"] == "10.3.0" and side["tensorrt"]["gpu"]["compute_capability"] == "8.7"
    assert side["tensorrt"]["build_options"]["strongly_typed"] and side["chunk"] == 160


def _has_tensorrt():
    try:
        load_tensorrt()
        import torch
        return torch.cuda.is_available()
    except TensorRTUnavailable:
        return False


@pytest.mark.skipif(_has_tensorrt(), reason="TensorRT is installed: the no-TensorRT path does not apply")
def test_trt_target_without_tensorrt_writes_onnx_and_prints_trtexec(tmp_path):
    save_checkpoint(random_model(), tmp_path / "m.pt")
    r = subprocess.run([sys.executable, "-m", "liquid_edge.cli", "export", str(tmp_path / "m.pt"), "-o", str(tmp_path),
                        "--target", "trt", "--chunk", "32"], capture_output=True, text=True)
    assert r.returncode == 3, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("trtexec --onnx=")
    assert r.stderr.strip().splitlines()[-1].startswith("error: no TensorRT engine built")
    assert (tmp_path / "m-c32-fp32.onnx").exists() and not (tmp_path / "m-c32-fp32.engine").exists()
    r = subprocess.run([sys.executable, "-m", "liquid_edge.cli", "export", str(tmp_path / "m.pt"), "-o", str(tmp_path),
                        "--target", "torch-trt", "--chunk", "32"], capture_output=True, text=True)
    assert r.returncode == 3 and "torch-tensorrt" in r.stderr


@pytest.mark.tensorrt
@pytest.mark.skipif(not _has_tensorrt(), reason="needs TensorRT and a CUDA GPU")
def test_tensorrt_engine_parity():
    rep = run_parity(random_model(liquid_kernel="polyb"), ["trt"], chunks=(16,), samples=640, max_calls=40)
    assert rep.ok and not any(r.skipped for r in rep.rows)


@pytest.mark.tensorrt
@pytest.mark.skipif(not _has_tensorrt(), reason="needs torch-tensorrt and a CUDA GPU")
def test_torch_tensorrt_compiles(tmp_path):
    pytest.importorskip("torch_tensorrt", reason="torch-tensorrt is not installed")
    save_checkpoint(random_model(), tmp_path / "m.pt")
    r = CliRunner().invoke(main, ["export", str(tmp_path / "m.pt"), "-o", str(tmp_path), "--target", "torch-trt", "--chunk", "32"])
    assert r.exit_code == 0 and (tmp_path / "m-c32-fp32.ep").exists()
