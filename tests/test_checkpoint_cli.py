"""Checkpoints (ours and official) and the CLI's behaviour on good and bad input."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import REF, needs_ref, random_model
from liquid_edge.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from liquid_edge.cli import main


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.output


def test_round_trip_is_exact(tmp_path):
    m = random_model(liquid_kernel="kb", liquid_degree=3, lcontract="tanh", labels=list("abcde"))
    save_checkpoint(m, tmp_path / "m.pt")
    m2 = load_checkpoint(tmp_path / "m.pt")
    assert m2.cfg == m.cfg
    x = torch.randn(1, 90)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    # loadable by plain torch.load(weights_only=True): no pickled code
    assert torch.load(tmp_path / "m.pt", weights_only=True)["format"] == "liquid-edge/1"


def test_info_and_classify(tmp_path):
    m = random_model(labels=list("abcde"))
    save_checkpoint(m, tmp_path / "m.pt")
    code, out = run("info", tmp_path / "m.pt", "--json")
    d = json.loads(out)
    assert code == 0 and d["causal"] and d["exact_streaming"] and d["parameters"] == m.num_parameters()
    x = np.random.default_rng(0).standard_normal(500).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, out = run("classify", tmp_path / "m.pt", tmp_path / "x.npy", "--json")
    d = json.loads(out)
    with torch.no_grad():
        ref = m(torch.from_numpy(x)[None])[0]
    assert code == 0 and d["backend"] == "torch-conv" and d["labels"] == list("abcde")
    assert np.abs(np.array(d["logits"]) - ref.numpy()).max() < 1e-6
    assert d["top"] == "abcde"[int(ref.argmax())]


@needs_ref
def test_official_checkpoint_info_says_why_it_cannot_stream():
    code, out = run("info", REF / "synthetic_pl1510_like_sc_tiny_polyb.ckpt",
                    "--official-aux", REF / "full_sc_like_polyb_deg2.extras.pt", "--json")
    d = json.loads(out)
    assert code == 0 and not d["causal"] and not d["exact_streaming"]
    assert "time-reversed" in d["streaming_blocker"]


@needs_ref
def test_official_liquid_checkpoint_without_coefficients_is_one_line():
    code, out = run("info", REF / "synthetic_pl1510_like_sc_tiny_polyb.ckpt")
    assert code == 2 and "needs its liquid coefficients" in out and len(out.strip().splitlines()) == 1


def _bad_checkpoints(tmp_path):
    m = random_model()
    save_checkpoint(m, tmp_path / "good.pt")
    blob = torch.load(tmp_path / "good.pt", weights_only=True)
    cases = {"missing": (tmp_path / "nope.pt", "no such file")}
    (tmp_path / "text.pt").write_text("hello")
    cases["not a checkpoint"] = (tmp_path / "text.pt", "not a PyTorch checkpoint")
    b = dict(blob, state_dict={k: v for k, v in blob["state_dict"].items() if not k.endswith("layer.D")})
    torch.save(b, tmp_path / "missing_key.pt")
    cases["missing key"] = (tmp_path / "missing_key.pt", "missing 2 key")
    sd = dict(blob["state_dict"])
    sd["encoder.0.weight"] = torch.zeros(3, 3)
    torch.save(dict(blob, state_dict=sd), tmp_path / "shape.pt")
    cases["mis-shaped"] = (tmp_path / "shape.pt", "encoder.0.weight has shape (3, 3)")
    torch.save(dict(blob, config=dict(blob["config"], wings=2)), tmp_path / "cfg.pt")
    cases["unknown option"] = (tmp_path / "cfg.pt", "unknown model config option(s): wings")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    torch.save({"format": "liquid-edge/1", "x": Evil()}, tmp_path / "evil.pt")
    cases["pickled code"] = (tmp_path / "evil.pt", "refused")
    return cases


def test_bad_checkpoints_give_one_line_and_exit_2(tmp_path):
    for name, (path, msg) in _bad_checkpoints(tmp_path).items():
        code, out = run("info", path)
        assert code == 2, name
        assert msg in out, (name, out)
        assert out.startswith("error: ") and len(out.strip().splitlines()) == 1, (name, out)
        with pytest.raises(CheckpointError):
            load_checkpoint(path)


def test_bad_clips_give_one_line_and_exit_2(tmp_path):
    save_checkpoint(random_model(), tmp_path / "m.pt")
    np.save(tmp_path / "nan.npy", np.array([0.0, np.nan], dtype=np.float32))
    np.save(tmp_path / "2d.npy", np.zeros((3, 4), dtype=np.float32))
    (tmp_path / "bad.wav").write_bytes(b"RIFF????WAVEjunk")
    for f, msg in [("nan.npy", "NaN"), ("2d.npy", "1-D"), ("bad.wav", "unreadable"), ("none.wav", "no such file")]:
        code, out = run("classify", tmp_path / "m.pt", tmp_path / f)
        assert code == 2 and msg in out and len(out.strip().splitlines()) == 1, (f, out)


def test_console_script_exits_2_without_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "liquid_edge.cli", "info", str(tmp_path / "x.pt")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.startswith("error:")


def test_usage_and_file_system_errors_are_one_line(tmp_path):
    save_checkpoint(random_model(), tmp_path / "m.pt")
    blocked = tmp_path / "file"
    blocked.write_text("")
    for args, msg in [(["export", str(tmp_path / "m.pt"), "--precision", "fp64"], "Invalid value for '--precision'"),
                      (["nosuchcommand"], "No such command"),
                      (["export", str(tmp_path / "m.pt"), "-o", str(blocked / "out")], "Not a directory")]:
        r = subprocess.run([sys.executable, "-m", "liquid_edge.cli", *args], capture_output=True, text=True)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith("error: ") and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
