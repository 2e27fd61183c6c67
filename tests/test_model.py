"""Properties of the convolution form: causality, precision, long kernels, devices."""
import pytest
import torch

from conftest import random_model, small_config
from liquid_edge.config import ConfigError, ModelConfig
from liquid_edge.describe import measured_causal
from liquid_edge.model import LiquidS4Classifier
from liquid_edge.ssm import DPLRKernel

LIQUID = [dict(liquid_kernel=None), dict(liquid_kernel="polyb"), dict(liquid_kernel="kb"),
          dict(liquid_kernel="polyb", liquid_degree=3), dict(liquid_kernel="kb", liquid_degree=3),
          dict(liquid_kernel="polyb", lcontract="tanh"), dict(liquid_kernel="kb", lcontract="lecun")]


@pytest.mark.parametrize("kw", LIQUID)
def test_causal_mode_is_causal(kw):
    m = random_model(**kw).double()
    x = torch.randn(2, 150, 1, dtype=torch.float64)
    for t in (0, 37, 149):
        x2 = x.clone()
        x2[:, t] += 0.5
        d = (m.features(x) - m.features(x2)).abs()
        if t:  # FFT rounding in float64 is ~1e-16; a causality leak would be O(1e-2)
            assert d[:, :t].max() < 1e-12
        assert d[:, t:].max() > 1e-6  # the perturbation does reach the output


def test_official_liquid_mode_is_detected_non_causal():
    assert not measured_causal(random_model(liquid_kernel="polyb", liquid_mode="official"))
    assert not measured_causal(random_model(liquid_kernel="kb", liquid_mode="official", allcombs=False))
    assert not measured_causal(random_model(bidirectional=True))
    assert measured_causal(random_model(liquid_kernel="kb", liquid_degree=3))


@pytest.mark.parametrize("kw", LIQUID[:3] + [dict(bidirectional=True), dict(norm="layer", prenorm=False)])
def test_float32_agrees_with_float64(kw):
    m32 = random_model(**kw)
    m64 = random_model(**kw).double()
    x = torch.randn(2, 300, 1)
    with torch.no_grad():
        err = (m32(x).double() - m64(x.double())).abs().max().item()
    assert err < 1e-4


def test_kernel_beyond_l_max_matches_direct_recurrence():
    torch.manual_seed(3)
    k = DPLRKernel(4, 16, n_ssm=2, l_max=50).double()
    dA, dB = k.discrete_dense()
    C = k.C_true()
    x, ref = dB, []
    for _ in range(437):   # > 8 l_max, not a power-of-two multiple
        ref.append(torch.einsum("chn,hn->ch", C, x).real)
        x = torch.einsum("hnm,hm->hn", dA, x)
    ref = torch.stack(ref, -1)
    with torch.no_grad():
        assert (k.kernel(437) - ref).abs().max() < 1e-10
        assert (k.kernel(20) - ref[..., :20]).abs().max() < 1e-10


def test_official_mode_truncates_at_l_max_like_the_official_code():
    m = random_model(liquid_kernel=None, liquid_mode="official")
    layer = m.model.layers[0].layer
    assert layer.conv_kernel(200).shape[-1] == 64
    assert random_model(liquid_kernel=None).model.layers[0].layer.conv_kernel(200).shape[-1] == 200


def test_gradients_reach_every_parameter():
    m = random_model(liquid_kernel="polyb").train()
    m(torch.randn(2, 100)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


def test_paper_speech_commands_config_has_the_paper_parameter_count():
    cfg = ModelConfig(d_model=128, n_layers=6, d_state=7, n_ssm=128, d_output=35, dt_min=0.002, dt_max=0.2)
    assert LiquidS4Classifier(cfg).num_parameters() == 224_675


def test_unknown_config_option_is_refused():
    with pytest.raises(ConfigError, match="unknown model config option"):
        ModelConfig.from_dict({"d_model": 8, "colour": "blue"})
    with pytest.raises(ConfigError):
        small_config(liquid_kernel="poly")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cpu_and_cuda_agree():
    m = random_model(liquid_kernel="polyb")
    x = torch.randn(2, 500)
    with torch.no_grad():
        a = m(x)
        b = m.cuda()(x.cuda()).cpu()
    assert (a - b).abs().max() < 1e-4
