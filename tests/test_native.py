"""The native CPU kernel (runtime/native.c) against the float64 convolution form (DESIGN.md section 4:
max abs error <= 1e-4 on logits) and against the torch stepwise module; chunk invariance, long
streams, the CLI (export, classify, spot, bench, parity), the runtime without torch, bad input."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import random_model
from liquid_edge.checkpoint import save_checkpoint
from liquid_edge.cli import main
from liquid_edge.export.native import native_arrays, save_native, unsupported_reason
from liquid_edge.export.parity import run_parity
from liquid_edge.export.pipeline import stream_parity
from liquid_edge.export.stepwise import StepwiseModel, StreamingError
from liquid_edge.runtime.native import NativeStream, _compiler, kernel_library
from liquid_edge.runtime.session import ModelError, manifest_path
from test_runtime import BLOCK_TORCH, LABELS, write_wav
from test_stepwise import VARIANTS, conv_reference

TOL = 1e-4


def _no_compiler() -> str | None:
    """Only a missing compiler skips these tests: a kernel that fails to build must fail them."""
    try:
        _compiler()
    except ModelError as e:
        return str(e)
    return None


pytestmark = pytest.mark.skipif(bool(_no_compiler()), reason=f"{_no_compiler()}")


def native_session(module, path) -> NativeStream:
    manifest_path(path).write_text(json.dumps(save_native(module, path)))
    return NativeStream(path)


def run_native(sess, x: np.ndarray, batch_states=None):
    T, st = sess.chunk, batch_states or sess.initial_state(x.shape[0])
    feats, logits = [], []
    for i in range(0, x.shape[1], T):
        lo, f, st = sess.step(x[:, i:i + T], st)
        feats.append(f)
        logits.append(lo)
    return np.concatenate(feats, 1), np.stack(logits, 1), st


STATES = {"n8": dict(), "n6": dict(d_state=7), "n12-generic": dict(d_state=12), "n2": dict(d_state=2)}


@pytest.mark.parametrize("name", [*VARIANTS, *STATES])
def test_native_equals_convolution(name, tmp_path):
    m = random_model(**(VARIANTS.get(name) or dict(liquid_kernel="polyb", **STATES[name])))
    x = (0.5 * np.random.default_rng(1).standard_normal((2, 640))).astype(np.float32)
    step = StepwiseModel(m, 32)
    f_ref, lg_ref = conv_reference(m, x, 32, step.window)
    f, lg, _ = run_native(native_session(step, tmp_path / "m.npz"), x)
    assert np.abs(f - f_ref.numpy()).max() < TOL
    assert np.abs(lg - lg_ref.numpy()).max() < TOL
    # and the same float32 function as the torch stepwise module, to float32 rounding
    par = stream_parity(step, NativeStream(tmp_path / "m.npz"), 2, 8)
    assert par["logits"] < 1e-5 and par["features"] < 1e-5 and par["state"] < 1e-5, par


def test_any_chunk_gives_the_same_stream(tmp_path):
    m = random_model(liquid_kernel="kb", liquid_degree=3, lcontract="tanh")
    x = (0.5 * np.random.default_rng(2).standard_normal((3, 8400))).astype(np.float32)
    outs = {T: run_native(native_session(StepwiseModel(m, T, window=8400), tmp_path / f"c{T}.npz"), x)
            for T in (1, 7, 168, 1200)}
    f7 = outs[7][0]
    for T, (f, lg, _) in outs.items():
        assert np.abs(f - f7).max() < 1e-5, T


def test_long_stream_of_a_speech_commands_sized_layer(tmp_path):
    """n = 6 (d_state 7, the paper's SC setting), H = 128: ten times the training length."""
    m = random_model(d_model=128, n_layers=2, d_state=7, l_max=400, liquid_kernel="polyb")
    x = (0.5 * np.random.default_rng(3).standard_normal((2, 4000))).astype(np.float32)
    step = StepwiseModel(m, 200)
    f_ref, lg_ref = conv_reference(m, x, 200, step.window)
    f, lg, st = run_native(native_session(step, tmp_path / "sc.npz"), x)
    assert np.abs(lg - lg_ref.numpy()).max() < TOL and np.abs(f - f_ref.numpy()).max() < TOL


def test_slow_modes_keep_their_poles(tmp_path):
    """dt ~ 1e-3: eigenvalues of A within ~1e-3 of 1. The kernel stores dA = A - I (from float64); A
    itself in float32 would move those poles (the shipped model then misses 1e-4 on logits)."""
    m = random_model(liquid_kernel="polyb", l_max=2000, dt_min=0.0005, dt_max=0.001)
    x = (0.5 * np.random.default_rng(4).standard_normal((2, 20000))).astype(np.float32)
    step = StepwiseModel(m, 200)
    _, lg_ref = conv_reference(m, x, 200, step.window)
    err = {}
    for form in ("dA", "A in float32"):
        sess = native_session(step, tmp_path / "m.npz")
        if form != "dA":   # what storing A itself would lose: round I + dA to float32
            z = dict(np.load(tmp_path / "m.npz"))
            for k in [k for k in z if k.endswith(".dA")]:
                eye = np.eye(z[k].shape[0])[:, :, None]
                z[k] = ((eye + z[k]).astype(np.float32).astype(np.float64) - eye).astype(np.float32)
            np.savez(tmp_path / "m.npz", **z)
            sess = NativeStream(tmp_path / "m.npz")
        err[form] = np.abs(run_native(sess, x)[1] - lg_ref.numpy()).max()
    assert err["dA"] < 1e-6 and err["A in float32"] > 5 * err["dA"], err


def test_log_mel_model(tmp_path):
    m = random_model(features="logmel", d_input=40, n_mels=40, l_max=50, liquid_kernel="polyb")
    rep = run_parity(m, ["native"], chunks=(160, 480), samples=16000, max_calls=200)
    assert [r.skipped for r in rep.rows] == [None, None] and rep.ok
    assert all(r.logit_max < TOL for r in rep.rows)


def test_parity_harness_runs_native_and_says_why_it_skips():
    rep = run_parity(random_model(liquid_kernel="polyb"), ["native"], chunks=(16, 64), samples=640)
    assert rep.ok and all(r.skipped is None and r.logit_max < TOL for r in rep.rows)
    bad = run_parity(random_model(liquid_kernel="polyb"), ["native"], chunks=(16,), samples=640, corrupt_state=0.5)
    assert not bad.ok   # the harness can fail through this backend
    odd = run_parity(random_model(liquid_kernel="polyb", d_model=12), ["native"], chunks=(16,), samples=160)
    assert "divisible by 8" in odd.rows[0].skipped


def test_refusals_are_one_line():
    assert "divisible by 8" in unsupported_reason(StepwiseModel(random_model(d_model=12), 16))
    with pytest.raises(StreamingError, match="fp32"):
        native_arrays(StepwiseModel(random_model(), 16).half_compute())


def test_states_of_the_wrong_shape_are_refused(tmp_path):
    sess = native_session(StepwiseModel(random_model(liquid_kernel="polyb"), 16), tmp_path / "m.npz")
    st = sess.initial_state(2)
    with pytest.raises(ModelError, match="states must be"):
        sess.step(np.zeros((3, 16), np.float32), st)       # batch 3, states for 2
    with pytest.raises(ModelError, match="samples must be"):
        sess.step(np.zeros((2, 15), np.float32), st)


def test_input_states_are_not_modified(tmp_path):
    sess = native_session(StepwiseModel(random_model(liquid_kernel="polyb"), 16), tmp_path / "m.npz")
    st = sess.initial_state(2)
    x = np.ones((2, 16), np.float32)
    lo, _, st2 = sess.step(x, st)
    assert all((s == 0).all() for s in st) and any(np.abs(s).max() > 0 for s in st2)
    lo_again, _, _ = sess.step(x, st)
    assert np.array_equal(lo, lo_again)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("nat")
    save_checkpoint(random_model(liquid_kernel="polyb", labels=LABELS, l_max=1600, sample_rate=8000), d / "m.pt")
    return d / "m.pt"


def test_cli_export_classify_spot_bench(ckpt, tmp_path):
    r = CliRunner().invoke(main, ["export", str(ckpt), "--target", "native", "-o", str(tmp_path), "--chunk", "80"])
    assert r.exit_code == 0, r.output
    npz = tmp_path / "m-c80-native.npz"
    man = json.loads(npz.with_suffix(".json").read_text())
    assert man["format"] == "liquid-edge-native/1" and man["parity"]["logits"] < TOL and man["batch"] == "dynamic"
    x = 0.3 * np.random.default_rng(0).standard_normal(1600).astype(np.float32)
    np.save(tmp_path / "clip.npy", x)
    a = json.loads(CliRunner().invoke(main, ["classify", str(ckpt), str(tmp_path / "clip.npy"), "--json"]).output)
    b = json.loads(CliRunner().invoke(main, ["classify", str(npz), str(tmp_path / "clip.npy"), "--json"]).output)
    assert b["backend"] == "native" and a["top"] == b["top"]
    assert np.abs(np.array(a["logits"]) - np.array(b["logits"])).max() < TOL
    write_wav(tmp_path / "a.wav", 0.3 * np.random.default_rng(1).standard_normal(16000), 16000)
    r = CliRunner().invoke(main, ["spot", str(npz), str(tmp_path / "a.wav"), str(tmp_path / "a.wav"),
                                  "--threshold", "0", "--json"])
    assert r.exit_code == 0, r.output
    events = [json.loads(ln) for ln in r.output.strip().splitlines()]
    assert events and {e["stream"] for e in events} == {str(tmp_path / "a.wav")}
    r = CliRunner().invoke(main, ["bench", str(npz), "--seconds", "1", "--streams", "2", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)["results"][0]
    assert res["backend"] == "native" and res["streams"] == 2 and res["median_ms"] > 0
    r = CliRunner().invoke(main, ["bench", str(ckpt), "--backend", "native", "--chunk", "80", "--seconds", "1", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["results"][0]["backend"] == "native", r.output
    r = CliRunner().invoke(main, ["parity", str(ckpt), "--backends", "native", "--chunk", "80", "--seconds", "1"])
    assert r.exit_code == 0 and "PASS" in r.output, r.output


def test_runs_where_torch_cannot_be_imported(ckpt, tmp_path):
    r = CliRunner().invoke(main, ["export", str(ckpt), "--target", "native", "-o", str(tmp_path / "m.npz")])
    assert r.exit_code == 0, r.output
    write_wav(tmp_path / "x.wav", 0.3 * np.random.default_rng(3).standard_normal(16000), 16000)
    for args in (["spot", str(tmp_path / "m.npz"), str(tmp_path / "x.wav"), "--threshold", "0", "--json"],
                 ["classify", str(tmp_path / "m.npz"), str(tmp_path / "x.wav"), "--json"]):
        r = subprocess.run([sys.executable, "-c", BLOCK_TORCH, *args], capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.strip(), r.stderr


def test_bad_input_is_one_line(ckpt, tmp_path, monkeypatch):
    r = CliRunner().invoke(main, ["export", str(ckpt), "--target", "native", "-o", str(tmp_path / "m.npz")])
    assert r.exit_code == 0, r.output
    write_wav(tmp_path / "ok.wav", np.zeros(800), 8000)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    (tmp_path / "junk.json").write_text((tmp_path / "m.json").read_text())
    (tmp_path / "onnx.npz").write_bytes((tmp_path / "m.npz").read_bytes())
    (tmp_path / "onnx.json").write_text(json.dumps(dict(json.loads((tmp_path / "m.json").read_text()),
                                                        format="liquid-edge-onnx/1")))
    z = dict(np.load(tmp_path / "m.npz"))
    for name, edit in (("shape", {"layer0.dA": z["layer0.dA"][1:]}), ("missing", {"dec_b": None}),
                       ("meta", {"meta": np.array(json.dumps(dict(json.loads(str(z["meta"])), n=9)))})):
        bad = {k: v for k, v in {**z, **edit}.items() if v is not None}
        np.savez(tmp_path / f"{name}.npz", **bad)
        (tmp_path / f"{name}.json").write_text((tmp_path / "m.json").read_text())
    cases = [(["spot", str(tmp_path / "junk.npz"), str(tmp_path / "ok.wav")], "not a native weights file"),
             (["spot", str(tmp_path / "shape.npz"), str(tmp_path / "ok.wav")], "array layer0.dA should be"),
             (["spot", str(tmp_path / "missing.npz"), str(tmp_path / "ok.wav")], "array dec_b should be"),
             (["classify", str(tmp_path / "meta.npz"), str(tmp_path / "ok.wav")], "should be"),
             (["bench", str(tmp_path / "m.npz"), "--threads", "2"], "runs on one thread"),
             (["spot", str(tmp_path / "onnx.npz"), str(tmp_path / "ok.wav")], "not a native export"),
             (["export", str(ckpt), "--target", "native", "--precision", "fp16"], "computes in fp32")]
    for args, msg in cases:
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2 and msg in r.output and len(r.output.strip().splitlines()) == 1, (args, r.output)
    # no compiler: one line that says what to install (a fresh cache, so nothing is already built)
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("LIQUID_EDGE_CACHE", str(tmp_path / "cache"))
    r = CliRunner().invoke(main, ["spot", str(tmp_path / "m.npz"), str(tmp_path / "ok.wav")])
    assert r.exit_code == 2 and "needs a C compiler" in r.output and len(r.output.strip().splitlines()) == 1, r.output


def test_kernel_is_cached_per_source_and_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("LIQUID_EDGE_CACHE", str(tmp_path))
    kernel_library()
    built = list((tmp_path / "native").glob("le-*.so"))
    kernel_library()
    assert len(built) == 1 and list((tmp_path / "native").glob("le-*.so")) == built
    assert not list((tmp_path / "native").glob(".le-*"))   # no half-written library left behind


def test_interrupted_export_leaves_no_file(ckpt, tmp_path, monkeypatch):
    from liquid_edge.export import native, pipeline

    def interrupt(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(pipeline, "stream_parity", interrupt)
    with pytest.raises(KeyboardInterrupt):
        native.export_native_checked(ckpt, tmp_path / "out", 80, log=lambda m: None)
    assert list((tmp_path / "out").iterdir()) == []
