"""The shipped keyword model end to end: export, then spot the keyword in a recording of a voice and
variant it never heard (models/samples, made by scripts/make_sample.py) at its known time."""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from liquid_edge.cli import main
from liquid_edge.runtime.detect import DetectionConfig
from liquid_edge.runtime.stream import file_source, open_model, spot

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "kws-tiny.pt"
SAMPLE = ROOT / "models" / "samples" / "yes_at_1.50s.wav"
START, WORD_S = 1.50, 0.37     # where the keyword starts, and how long it is


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("kws")
    r = CliRunner().invoke(main, ["export", str(MODEL), "-o", str(d), "--chunk", "80", "--batch", "dynamic"])
    assert r.exit_code == 0, r.output
    return d / "kws-tiny-c80-fp32.onnx"


def test_the_keyword_is_detected_once_near_its_time(onnx_model):
    r = CliRunner().invoke(main, ["spot", str(onnx_model), str(SAMPLE), "--json"])
    assert r.exit_code == 0, r.output
    events = [json.loads(line) for line in r.output.splitlines()]
    assert len(events) == 1, events
    # decided after the word has been heard, within the model's 1 s pooling window
    assert events[0]["keyword"] == "yes" and START + 0.5 * WORD_S <= events[0]["time"] <= START + WORD_S + 1.0, events


def test_how_audio_arrives_never_changes_detections(onnx_model):
    m = open_model(onnx_model)
    det = DetectionConfig.from_manifest(m.manifest, thresholds={"yes": 0.5})
    runs = []
    for block in (97, 1000, 64000):
        events = []
        spot(m, [file_source(SAMPLE, block=block)], det, events.append)
        runs.append(events)
    assert runs[0] and all(r == runs[0] for r in runs)


def test_checkpoint_and_export_classify_the_sample_alike(onnx_model, tmp_path):
    # a 1 s clip (the training length) around the keyword
    import numpy as np
    from liquid_edge.runtime.audio import load_clip
    x = load_clip(SAMPLE, 8000)[int(1.2 * 8000):int(2.2 * 8000)]
    np.save(tmp_path / "clip.npy", x)
    a = json.loads(CliRunner().invoke(main, ["classify", str(MODEL), str(tmp_path / "clip.npy"), "--json"]).output)
    b = json.loads(CliRunner().invoke(main, ["classify", str(onnx_model), str(tmp_path / "clip.npy"), "--json"]).output)
    assert a["top"] == b["top"] == "yes"
    assert np.abs(np.array(a["logits"]) - np.array(b["logits"])).max() < 1e-4


def test_evaluate_on_a_small_held_out_set(onnx_model, tmp_path):
    import shutil
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (CI installs it)")
    from liquid_edge.synth import synthesize
    words = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
    synthesize(tmp_path / "d", words, per_word=4, unknown_words=["cat"], per_unknown=2, long_streams=1, seed=3)
    r = CliRunner().invoke(main, ["evaluate", str(onnx_model), str(tmp_path / "d"), "--json",
                                  "--plot", str(tmp_path / "curve.png")])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["clips"] > 0 and d["accuracy_reset"] >= 0.5 and 0 <= d["accuracy_carried"] <= 1
    assert d["long"]["recordings"] == 1 and d["long"]["keywords"] > 0
    assert all(0 <= row["frr"] <= 1 and row["fa_per_hour"] >= 0 for row in d["long"]["curve"])
    assert (tmp_path / "curve.png").stat().st_size > 1000


def test_the_native_kernel_hears_the_same(onnx_model, tmp_path):
    r = CliRunner().invoke(main, ["export", str(MODEL), "--target", "native", "-o", str(tmp_path), "--chunk", "80"])
    assert r.exit_code == 0, r.output
    ev = {}
    for name, path in (("onnx", onnx_model), ("native", tmp_path / "kws-tiny-c80-native.npz")):
        r = CliRunner().invoke(main, ["spot", str(path), str(SAMPLE), "--json"])
        assert r.exit_code == 0, r.output
        ev[name] = [json.loads(line) for line in r.output.splitlines()]
    assert [(e["keyword"], e["time"]) for e in ev["native"]] == [(e["keyword"], e["time"]) for e in ev["onnx"]]
    assert all(abs(a["score"] - b["score"]) < 1e-4 for a, b in zip(ev["native"], ev["onnx"]))

