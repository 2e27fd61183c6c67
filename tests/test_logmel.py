"""Log-mel features: the front end against numpy's FFT, exact streaming (frames across chunks),
export and classification through the exported graph."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import random_model
from liquid_edge.checkpoint import save_checkpoint
from liquid_edge.cli import main
from liquid_edge.config import ConfigError, ModelConfig
from liquid_edge.export.convert import streaming_module
from liquid_edge.export.parity import run_parity
from liquid_edge.export.stepwise import StreamingError
from liquid_edge.features import LogMel, mel_filterbank

LOGMEL = dict(features="logmel", d_input=40, n_mels=40, l_max=50, liquid_kernel="polyb")


def test_log_mel_equals_numpy_fft_of_causal_frames():
    x = np.random.default_rng(0).standard_normal((2, 1600))
    out = LogMel(16000, 40, 400, 160).double()(torch.from_numpy(x)).numpy()
    xe = np.concatenate([np.zeros((2, 240)), x], 1)      # frame k ends at sample (k+1)·hop
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
    fb = mel_filterbank(16000, 400, 40)
    ref = np.stack([np.log(np.abs(np.fft.rfft(xe[:, k * 160:k * 160 + 400] * hann)) ** 2 @ fb + 1e-6)
                    for k in range(10)], 1)
    assert out.shape == (2, 10, 40) and np.abs(out - ref).max() < 1e-5   # float32 DFT constants
    assert (fb.sum(0) > 0).all()                                           # no empty mel band


@pytest.mark.parametrize("kw", [dict(), dict(liquid_kernel="kb", norm="layer")])
def test_log_mel_models_stream_exactly(kw):
    rep = run_parity(random_model(**{**LOGMEL, **kw}), ["torch", "onnx"], chunks=(160, 480), samples=16000, max_calls=200)
    rows = [r for r in rep.rows if not r.skipped]
    assert len(rows) == 4 and rep.ok and all(r.logit_max < 1e-4 for r in rows)


def test_log_mel_export_and_classify_agree(tmp_path):
    m = random_model(**{**LOGMEL, "l_max": 100})
    save_checkpoint(m, tmp_path / "m.pt")
    r = CliRunner().invoke(main, ["export", str(tmp_path / "m.pt"), "-o", str(tmp_path), "--chunk", "320"])
    assert r.exit_code == 0, r.output
    onnx_path = tmp_path / "m-c320-fp32.onnx"
    man = json.loads(onnx_path.with_suffix(".json").read_text())
    assert man["states"][0]["name"] == "frontend_state" and man["states"][0]["shape"] == [1, 240]
    assert man["outputs"][1]["shape"] == [1, 2, 8]                  # features per frame: 320 / 160 frames
    np.save(tmp_path / "clip.npy", (0.3 * np.random.default_rng(1).standard_normal(16000)).astype(np.float32))
    a = json.loads(CliRunner().invoke(main, ["classify", str(tmp_path / "m.pt"), str(tmp_path / "clip.npy"), "--json"]).output)
    b = json.loads(CliRunner().invoke(main, ["classify", str(onnx_path), str(tmp_path / "clip.npy"), "--json"]).output)
    assert np.abs(np.array(a["logits"]) - np.array(b["logits"])).max() < 1e-4


def test_log_mel_configuration_errors():
    with pytest.raises(ConfigError, match="d_input == n_mels"):
        ModelConfig(features="logmel", d_input=1)
    with pytest.raises(StreamingError, match="multiple of the feature hop"):
        streaming_module(random_model(**LOGMEL), 100)
    with pytest.raises(StreamingError, match="raw single-channel"):
        streaming_module(random_model(**LOGMEL), 160, "window")
