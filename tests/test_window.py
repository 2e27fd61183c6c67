"""Exact windowed inference (--liquid-mode window): the direct-convolution graph against the model
re-run on each window, official reference vectors, ONNX export and parity."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import REF, needs_ref, random_model
from liquid_edge.cli import main
from liquid_edge.export.convert import WindowedModel
from liquid_edge.export.stepwise import StreamingError, run_stream
from liquid_edge.export.window import WindowGraph

CASES = {
    "official-pb-allcombs": dict(liquid_kernel="polyb", liquid_mode="official"),
    "official-pb3-shift-tanh": dict(liquid_kernel="polyb", liquid_mode="official", allcombs=False, liquid_degree=3,
                                    lcontract="tanh"),
    "official-pb-bidirectional": dict(liquid_kernel="polyb", liquid_mode="official", bidirectional=True),
    "plain-bidirectional-layernorm": dict(liquid_kernel=None, bidirectional=True, norm="layer"),
    "causal-kb": dict(liquid_kernel="kb"),
    "official-pb-2-channels": dict(liquid_kernel="polyb", liquid_mode="official", channels=2),
}


@pytest.mark.parametrize("name", CASES)
def test_window_graph_equals_the_model_on_each_window(name):
    m = random_model(**CASES[name])
    x = torch.randn(2, 256)
    f_ref, lg_ref, _ = run_stream(WindowedModel(m, 32, 64), x)      # the model itself (FFT convolution)
    f, lg, _ = run_stream(WindowGraph(m, 32, 64), x)
    assert (f - f_ref).abs().max() < 1e-5 and (lg - lg_ref).abs().max() < 1e-5


def test_what_the_window_graph_refuses():
    with pytest.raises(StreamingError, match="KB"):
        WindowGraph(random_model(liquid_kernel="kb", liquid_mode="official"), 16, 64)
    # an official bidirectional kernel stops at l_max (64): a longer window has no exact graph here
    with pytest.raises(StreamingError, match="window <= l_max"):
        WindowGraph(random_model(bidirectional=True, liquid_kernel=None, liquid_mode="official"), 16, 128)
    # ours computes the kernel for the window's length: no limit
    WindowGraph(random_model(bidirectional=True, liquid_kernel=None), 16, 128)


@needs_ref
def test_official_liquid_checkpoint_exports_exactly_as_a_window(tmp_path):
    ckpt, aux = REF / "synthetic_pl1510_like_sc_tiny_polyb.ckpt", REF / "full_sc_like_polyb_deg2.extras.pt"
    r = CliRunner().invoke(main, ["export", str(ckpt), "--official-aux", str(aux), "--chunk", "16", "-o", str(tmp_path)])
    assert r.exit_code == 2 and "--liquid-mode window" in r.output
    r = CliRunner().invoke(main, ["export", str(ckpt), "--official-aux", str(aux), "--chunk", "16", "-o", str(tmp_path),
                                  "--liquid-mode", "window"])
    assert r.exit_code == 0, r.output
    onnx_path = tmp_path / "synthetic_pl1510_like_sc_tiny_polyb-c16-fp32.onnx"
    man = json.loads(onnx_path.with_suffix(".json").read_text())
    assert man["liquid_mode"] == "window" and [s["name"] for s in man["states"]] == ["window_state"]
    # the official logits of the reference clip, from the exported graph, streamed in chunks of 16
    from liquid_edge.runtime.session import OnnxStream
    io = np.load(REF / "full_sc_like_polyb_deg2.io.npz")
    sess = OnnxStream(onnx_path)
    for b in range(2):
        st = sess.initial_state(1)
        for t in range(0, 64, 16):
            lg, _, st = sess.step(io["x"][b:b + 1, t:t + 16, 0], st)
        assert np.abs(lg[0] - io["logits"][b]).max() < 1e-5
