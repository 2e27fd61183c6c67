"""The stepwise form against the convolution form (DESIGN.md section 4: max abs error <= 1e-4 on logits
against a float64 reference), chunk-size invariance, long streams, refusals, and the parity harness."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import REF, needs_ref, random_model
from liquid_edge.checkpoint import load_checkpoint, save_checkpoint
from liquid_edge.cli import main
from liquid_edge.export.convert import reference_model, streaming_module
from liquid_edge.export.parity import reference_logits, run_parity
from liquid_edge.export.stepwise import StepwiseModel, StreamingError, run_stream

TOL = 1e-4
VARIANTS = {
    "plain": dict(liquid_kernel=None),
    "pb2": dict(liquid_kernel="polyb"),
    "pb3": dict(liquid_kernel="polyb", liquid_degree=3),
    "kb2": dict(liquid_kernel="kb"),
    "kb3": dict(liquid_kernel="kb", liquid_degree=3),
    "pb2-tanh": dict(liquid_kernel="polyb", lcontract="tanh"),
    "kb2-lecun-layernorm": dict(liquid_kernel="kb", lcontract="lecun", norm="layer"),
    "pb2-postnorm-batch": dict(liquid_kernel="polyb", prenorm=False),
    "pb2-postnorm-layer": dict(liquid_kernel="polyb", prenorm=False, norm="layer"),
    "last-pool-2ch": dict(liquid_kernel="polyb", pool="last", channels=2),
}


def conv_reference(m, x, T, W):
    ref = reference_model(m, None)
    with torch.no_grad():
        f = ref.features(torch.from_numpy(x).double().unsqueeze(-1))
        return f, reference_logits(ref, f, T, W)


@pytest.mark.parametrize("name", VARIANTS)
def test_stepwise_equals_convolution(name):
    m = random_model(**VARIANTS[name])
    x = (0.5 * np.random.default_rng(1).standard_normal((2, 640))).astype(np.float32)
    step = StepwiseModel(m, 32)
    f_ref, lg_ref = conv_reference(m, x, 32, step.window)
    f, lg, _ = run_stream(step, torch.from_numpy(x))
    assert (f.double() - f_ref).abs().max() < TOL
    assert (lg.double() - lg_ref).abs().max() < TOL


def test_chunk_size_never_changes_the_result():
    m = random_model(liquid_kernel="kb", liquid_degree=3, lcontract="tanh")
    x = torch.from_numpy((0.5 * np.random.default_rng(2).standard_normal((2, 28000))).astype(np.float32))
    outs = {T: run_stream(StepwiseModel(m, T, window=28000), x) for T in (7, 160, 1000)}
    f7, lg7, _ = outs[7]
    for T, (f, lg, _) in outs.items():
        assert (f - f7).abs().max() < 1e-5, T
        # the decision after the same sample (a common multiple of both chunks) agrees
        ends = np.arange(np.lcm(7, T), 28001, np.lcm(7, T))
        assert (lg[:, ends // T - 1] - lg7[:, ends // 7 - 1]).abs().max() < 1e-5, T
    # one sample per call (slow in Python: a shorter prefix)
    f1, lg1, _ = run_stream(StepwiseModel(m, 1, window=28000), x[:, :2800])
    assert (f1 - f7[:, :2800]).abs().max() < 1e-5
    assert (lg1[:, 6::7] - lg7[:, :400]).abs().max() < 1e-5


def test_streams_ten_times_the_training_length():
    m = random_model(liquid_kernel="polyb", l_max=200)
    x = (0.5 * np.random.default_rng(3).standard_normal((2, 2000))).astype(np.float32)
    step = StepwiseModel(m, 100)
    assert step.window == 200
    f_ref, lg_ref = conv_reference(m, x, 100, 200)
    f, lg, _ = run_stream(step, torch.from_numpy(x))
    assert (f.double() - f_ref).abs().max() < TOL
    assert (lg.double() - lg_ref).abs().max() < TOL


def test_state_carries_across_calls():
    m = random_model(liquid_kernel="polyb")
    x = torch.randn(1, 320)
    step = StepwiseModel(m, 160)
    f_all, _, st_all = run_stream(step, x)
    f_a, _, st = run_stream(step, x[:, :160])
    f_b, _, st_b = run_stream(step, x[:, 160:], st)
    assert torch.allclose(torch.cat([f_a, f_b], 1), f_all) and all(torch.equal(a, b) for a, b in zip(st_b, st_all))


def test_no_complex_and_float32_constants():
    step = StepwiseModel(random_model(liquid_kernel="kb"), 16)
    for name, t in list(step.named_buffers()) + list(step.named_parameters()):
        assert t.dtype == torch.float32, name


@needs_ref
def test_official_full_model_streams_where_exactness_is_claimed():
    # The official full model is liquid: exact streaming is refused; its plain-S4 version converts exactly.
    model = load_checkpoint(REF / "synthetic_pl1510_like_sc_tiny_polyb.ckpt",
                            official_aux=REF / "full_sc_like_polyb_deg2.extras.pt")
    with pytest.raises(StreamingError, match="time-reversed"):
        streaming_module(model, 16)
    io = np.load(REF / "full_sc_like_polyb_deg2.io.npz")
    x = torch.tensor(io["x"])[..., 0]
    # windowed inference reproduces the official logits exactly: the window is the whole clip
    win = streaming_module(model, 16, "window", window=64)
    _, lg, _ = run_stream(win, x)
    assert np.abs(lg[:, -1].numpy() - io["logits"]).max() < 1e-5
    # plain S4 with the same weights: official forward == stepwise
    import dataclasses
    from liquid_edge.model import LiquidS4Classifier
    plain = LiquidS4Classifier(dataclasses.replace(model.cfg, liquid_kernel=None))
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if k in plain.state_dict()})
    plain.eval()
    step = streaming_module(plain, 16, window=64)
    _, lg, _ = run_stream(step, x)
    with torch.no_grad():
        assert np.abs(lg[:, -1].numpy() - plain(x).numpy()).max() < TOL


def test_refusals_are_one_line():
    with pytest.raises(StreamingError, match="bidirectional") as e:
        streaming_module(random_model(bidirectional=True), 16)
    assert "\n" not in str(e.value)
    with pytest.raises(StreamingError, match="multiple of the chunk"):
        StepwiseModel(random_model(), 7, window=64)


def test_parity_cli_passes_and_reports(tmp_path):
    save_checkpoint(random_model(liquid_kernel="polyb"), tmp_path / "m.pt")
    r = CliRunner().invoke(main, ["parity", str(tmp_path / "m.pt"), "--backends", "torch,nosuch",
                                  "--chunk", "1,16,64", "--json"])
    d = json.loads(r.output)
    assert r.exit_code == 0 and d["ok"], r.output
    ran = [row for row in d["rows"] if not row["skipped"]]
    assert {row["chunk"] for row in ran} == {1, 16, 64} and all(row["logit_max"] < TOL for row in ran)
    assert all(row["samples"] >= 64 for row in ran) and max(row["samples"] for row in ran) == 640  # 10 x l_max
    assert any(row["backend"] == "nosuch" and "unknown backend" in row["skipped"] for row in d["rows"])


def test_parity_fails_on_a_corrupted_state(tmp_path):
    save_checkpoint(random_model(liquid_kernel="polyb"), tmp_path / "m.pt")
    r = CliRunner().invoke(main, ["parity", str(tmp_path / "m.pt"), "--backends", "torch", "--chunk", "16",
                                  "--corrupt-state", "0.5"])
    assert r.exit_code == 1 and "FAIL" in r.output


@needs_ref
def test_parity_on_official_liquid_model_offers_the_alternatives():
    args = ["parity", str(REF / "synthetic_pl1510_like_sc_tiny_polyb.ckpt"), "--official-aux",
            str(REF / "full_sc_like_polyb_deg2.extras.pt"), "--backends", "torch", "--chunk", "16"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "--liquid-mode causal" in r.output and "--liquid-mode window" in r.output
    r = CliRunner().invoke(main, args + ["--liquid-mode", "causal"])
    assert r.exit_code == 0 and "causal vs official forward" in r.output, r.output
    r = CliRunner().invoke(main, args + ["--liquid-mode", "window", "--seconds", "0.016"])
    assert r.exit_code == 0, r.output
