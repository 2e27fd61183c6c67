"""The device runtime: exported models without torch, audio in, resampling, detection, classify."""
import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import random_model
from liquid_edge.checkpoint import save_checkpoint
from liquid_edge.cli import main
from liquid_edge.runtime.audio import StreamResampler, load_clip, resample
from liquid_edge.runtime.detect import DetectionConfig, Detector

LABELS = ["_silence_", "_unknown_", "yes", "no", "up"]


def write_wav(path, x, sr, channels=1, dtype="int16"):
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    if x.shape[1] != channels:
        x = np.repeat(x, channels, 1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("exp")
    save_checkpoint(random_model(liquid_kernel="polyb", labels=LABELS, l_max=1600, sample_rate=8000), d / "m.pt")
    r = CliRunner().invoke(main, ["export", str(d / "m.pt"), "-o", str(d), "--chunk", "80", "--batch", "dynamic"])
    assert r.exit_code == 0, r.output
    return d / "m.pt", d / "m-c80-fp32.onnx"


def test_classify_checkpoint_and_export_agree(exported, tmp_path):
    ckpt, onnx_path = exported
    x = 0.3 * np.random.default_rng(0).standard_normal(1600).astype(np.float32)   # one training-length clip
    np.save(tmp_path / "clip.npy", x)
    a = json.loads(CliRunner().invoke(main, ["classify", str(ckpt), str(tmp_path / "clip.npy"), "--json"]).output)
    b = json.loads(CliRunner().invoke(main, ["classify", str(onnx_path), str(tmp_path / "clip.npy"), "--json"]).output)
    assert a["labels"] == b["labels"] == LABELS and a["top"] == b["top"]
    assert a["backend"] == "torch-conv" and b["backend"] == "onnxruntime"
    assert np.abs(np.array(a["logits"]) - np.array(b["logits"])).max() < 1e-4


def test_resampling_and_downmix(tmp_path):
    t = np.arange(44100) / 44100
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    write_wav(tmp_path / "st.wav", tone, 44100, channels=2)
    y = load_clip(tmp_path / "st.wav", 16000)
    assert len(y) == 16000
    ref = 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    assert np.abs(y[200:-200] - ref[200:-200]).max() < 2e-3          # int16 rounding + band edges
    # the streaming resampler: same result whatever the block sizes, close to the whole-clip one
    outs = []
    for block in (1, 37, 4096):
        rs = StreamResampler(44100, 16000)
        outs.append(np.concatenate([rs(tone[i:i + block]) for i in range(0, len(tone), block)] + [rs(np.zeros(0), final=True)]))
    assert all(np.array_equal(o, outs[0]) for o in outs)
    assert np.abs(outs[0][300:15700] - ref[300:15700]).max() < 2e-3
    assert np.abs(resample(tone, 44100, 16000)[300:-300] - ref[300:-300]).max() < 1e-3


def _cfg(**kw):
    base = dict(threshold={"yes": 0.5, "no": 0.5}, smoothing_chunks=1, patience=1, refractory_chunks=0, warmup_chunks=0)
    base.update(kw)
    return DetectionConfig(**base)


def _logits(seq):
    """Per-chunk logits that make the given label clearly the most probable."""
    out = np.full((len(seq), len(LABELS)), -5.0)
    for i, lab in enumerate(seq):
        out[i, LABELS.index(lab)] = 5.0
    return out


def run(det, seq):
    return [(i, kw) for i, lg in enumerate(_logits(seq)) for _, kw, _ in det.update(lg[None])]


def test_patience_and_refractory():
    seq = ["_silence_", "yes", "yes", "yes", "_silence_", "yes", "_silence_"]
    assert run(Detector(LABELS, _cfg(patience=3)), seq) == [(3, "yes")]      # only the 3-chunk run counts
    assert run(Detector(LABELS, _cfg(patience=1)), seq) == [(1, "yes"), (2, "yes"), (3, "yes"), (5, "yes")]
    # a refractory period of R chunks blocks the R chunks after a detection
    assert run(Detector(LABELS, _cfg(refractory_chunks=3)), seq) == [(1, "yes"), (5, "yes")]
    assert run(Detector(LABELS, _cfg(refractory_chunks=4)), seq) == [(1, "yes")]
    # warm-up after a reset, and the background classes never fire even when certain
    assert run(Detector(LABELS, _cfg(warmup_chunks=2)), seq) == [(2, "yes"), (3, "yes"), (5, "yes")]
    assert run(Detector(LABELS, _cfg()), ["_unknown_", "_silence_", "up"]) == []   # "up" is not a chosen keyword
    d = Detector(LABELS, _cfg(smoothing_chunks=3, threshold={"yes": 0.6}))
    assert run(d, ["yes", "_silence_", "yes", "yes"]) == [(0, "yes"), (2, "yes"), (3, "yes")]   # smoothed: 1, .5, .67, .67


def test_thresholds_and_defaults_from_the_manifest():
    man = {"chunk": 160, "sample_rate": 16000, "labels": LABELS,
           "detection": {"threshold": 0.7, "smoothing_s": 0.05, "patience": 2, "refractory_s": 1.0, "warmup_s": 0.5,
                         "background": ["_silence_", "_unknown_"]}}
    cfg = DetectionConfig.from_manifest(man, thresholds={"no": 0.9})
    assert cfg.threshold == {"yes": 0.7, "no": 0.9, "up": 0.7}
    assert (cfg.smoothing_chunks, cfg.patience, cfg.refractory_chunks, cfg.warmup_chunks) == (5, 2, 100, 50)
    with pytest.raises(ValueError, match="not in the model's labels"):
        DetectionConfig.from_manifest(man, ["maybe"])


def test_spot_cli_batches_files_and_json_lines(exported, tmp_path):
    _, onnx_path = exported
    g = np.random.default_rng(1)
    for i, sr in enumerate((8000, 16000, 22050)):
        write_wav(tmp_path / f"a{i}.wav", 0.3 * g.standard_normal(sr * 2), sr, channels=1 + i % 2)
    # threshold 0: every chunk after warm-up passes, the refractory period spaces the detections
    r = CliRunner().invoke(main, ["spot", str(onnx_path), *(str(tmp_path / f"a{i}.wav") for i in range(3)),
                                  "--threshold", "0", "--refractory", "0.5", "--warmup", "0.2", "--json"])
    assert r.exit_code == 0, r.output
    ev = [json.loads(line) for line in r.output.splitlines()]
    assert {e["stream"] for e in ev} == {str(tmp_path / f"a{i}.wav") for i in range(3)}
    for name in {e["stream"] for e in ev}:
        times = [e["time"] for e in ev if e["stream"] == name]
        assert times[0] > 0.2 and all(b - a > 0.5 for a, b in zip(times, times[1:])) and times[-1] <= 2.0


def test_spot_reads_raw_pcm_on_stdin(exported, tmp_path):
    _, onnx_path = exported
    pcm = (0.3 * np.random.default_rng(2).standard_normal(16000) * 32767).astype("<i2").tobytes()
    r = subprocess.run([sys.executable, "-m", "liquid_edge.cli", "spot", str(onnx_path), "-", "--rate", "16000",
                        "--threshold", "0", "--refractory", "0.3", "--json"], input=pcm, capture_output=True)
    assert r.returncode == 0, r.stderr
    assert all(json.loads(line)["stream"] == "stdin" for line in r.stdout.decode().splitlines())


def test_bad_runtime_input_is_one_line(exported, tmp_path):
    _, onnx_path = exported
    (tmp_path / "empty.wav").write_bytes(b"")
    write_wav(tmp_path / "ok.wav", np.zeros(800), 8000)
    bad_man = tmp_path / "bad.onnx"
    bad_man.write_bytes(onnx_path.read_bytes())
    bad_man.with_suffix(".json").write_text("{not json")
    man = json.loads(onnx_path.with_suffix(".json").read_text())
    for name, edit, msg in [("chunk", {"chunk": 160}, "(chunk)"), ("rate", {"sample_rate": 0}, "sample_rate"),
                            ("state", {"states": [dict(man["states"][0], shape=["batch", 9, 9, 9])] + man["states"][1:]},
                             "ssm_state_in")]:
        p = tmp_path / f"{name}.onnx"
        p.write_bytes(onnx_path.read_bytes())
        p.with_suffix(".json").write_text(json.dumps(dict(man, **edit)))
        r = CliRunner().invoke(main, ["spot", str(p), str(tmp_path / "ok.wav")])
        assert r.exit_code == 2 and msg in r.output and len(r.output.strip().splitlines()) == 1, (name, r.output)
    cases = [(["spot", str(onnx_path), str(tmp_path / "empty.wav")], "unreadable"),
             (["spot", str(onnx_path), str(tmp_path / "missing.wav")], "no such file"),
             (["spot", str(bad_man), str(tmp_path / "ok.wav")], "not a JSON manifest"),
             (["spot", str(onnx_path), str(tmp_path / "ok.wav"), "--keywords", "maybe"], "not in the model's labels"),
             (["spot", str(tmp_path / "ok.wav"), str(tmp_path / "ok.wav")], "not an exported model"),
             (["spot", str(onnx_path)], "give audio files")]
    for args, msg in cases:
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2 and msg in r.output and len(r.output.strip().splitlines()) == 1, (args, r.output)


BLOCK_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == 'torch' or name.startswith('torch.'):
            raise ImportError('torch is blocked in this process')
sys.meta_path.insert(0, NoTorch())
from liquid_edge.cli import main
sys.argv = ['liquid-edge'] + sys.argv[1:]
main()
"""


def test_runtime_runs_where_torch_cannot_be_imported(exported, tmp_path):
    _, onnx_path = exported
    write_wav(tmp_path / "x.wav", 0.3 * np.random.default_rng(3).standard_normal(16000), 16000)
    for args in (["spot", str(onnx_path), str(tmp_path / "x.wav"), "--threshold", "0", "--json"],
                 ["classify", str(onnx_path), str(tmp_path / "x.wav"), "--json"]):
        r = subprocess.run([sys.executable, "-c", BLOCK_TORCH, *args], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip()
    # a checkpoint command there says what is missing, in one line
    r = subprocess.run([sys.executable, "-c", BLOCK_TORCH, "info", str(exported[0])], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: this command needs torch") and len(r.stderr.splitlines()) == 1
    probe = BLOCK_TORCH.split("from liquid_edge.cli")[0] + "import torch\n"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode != 0   # the block works
