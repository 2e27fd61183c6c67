"""Official compatibility mode against the reference vectors made by the official Liquid-S4 code.

Tolerance: 1e-5 max abs error (the references are float32 outputs of the official code).
"""
import numpy as np
import pytest
import torch

from conftest import LAYER_CASES, REF, needs_ref, official_layer
from liquid_edge.checkpoint import load_checkpoint

pytestmark = needs_ref
TOL = 1e-5


@pytest.mark.parametrize("case", LAYER_CASES)
@pytest.mark.parametrize("suffix", ["", "_short"])
def test_layer_matches_official(case, suffix):
    layer, io = official_layer(case)
    u = torch.tensor(io["u" + suffix])
    with torch.no_grad():
        pre = layer.preactivation(u.transpose(1, 2)).flatten(1, 2)
        y = layer(u)
    assert np.abs(pre.numpy() - io["y_preact" + suffix]).max() < TOL
    assert np.abs(y.numpy() - io["y" + suffix]).max() < TOL


@pytest.mark.parametrize("case", LAYER_CASES)
def test_kernel_matches_official(case):
    layer, io = official_layer(case)
    with torch.no_grad():
        k = layer.kernel.kernel.kernel(64)
    assert np.abs(k.numpy() - io["k"]).max() < TOL


def test_plain_s4_is_the_same_in_both_modes():
    official, io = official_layer("s4_plain", "official")
    causal, _ = official_layer("s4_plain", "causal")
    u = torch.tensor(io["u"])
    with torch.no_grad():
        assert torch.equal(official(u), causal(u))
    assert np.abs(causal(u).detach().numpy() - io["y"]).max() < TOL


def test_causal_mode_differs_from_official_for_liquid_layers():
    # Same weights, our causal liquid terms: the official (time-reversed) outputs are not reproduced.
    causal, io = official_layer("polyb_deg2_shift", "causal")
    with torch.no_grad():
        y = causal(torch.tensor(io["u"])).numpy()
    assert np.abs(y - io["y"]).max() > 1e-3


def test_full_model_from_synthetic_lightning_checkpoint():
    model = load_checkpoint(REF / "synthetic_pl1510_like_sc_tiny_polyb.ckpt",
                            official_aux=REF / "full_sc_like_polyb_deg2.extras.pt")
    io = np.load(REF / "full_sc_like_polyb_deg2.io.npz")
    with torch.no_grad():
        logits = model(torch.tensor(io["x"]))
        acts = model.encoder(torch.tensor(io["x"]))
        assert np.abs(acts.numpy() - io["act__encoder"]).max() < TOL
        for i, block in enumerate(model.model.layers):
            acts = block(acts)
            assert np.abs(acts.numpy() - io[f"act__model_layers_{i}"]).max() < TOL
    assert np.abs(logits.numpy() - io["logits"]).max() < TOL
