"""The benchmark tooling (timings themselves live in bench/, never in tests)."""
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT, random_model
from liquid_edge.checkpoint import save_checkpoint
from liquid_edge.cli import main
from liquid_edge.export.stepwise import StepwiseModel
from liquid_edge.runtime.benchmark import parse_trtexec, synthetic_audio, time_stream

TRTEXEC = """[I] === Performance summary ===
[I] Throughput: 4123.45 qps
[I] Latency: min = 0.25 ms, max = 0.61 ms, mean = 0.27 ms, median = 0.26 ms, percentile(90%) = 0.29 ms
[I] GPU Compute Time: min = 0.2 ms, max = 0.5 ms, mean = 0.22 ms, median = 0.21 ms, percentile(90%) = 0.24 ms, percentile(99%) = 0.31 ms
"""


def test_parse_trtexec_summary():
    d = parse_trtexec(TRTEXEC)
    assert d == {"throughput_qps": 4123.45, "min_ms": 0.2, "max_ms": 0.5, "mean_ms": 0.22, "median_ms": 0.21,
                 "p90_ms": 0.24, "p99_ms": 0.31}


def test_time_stream_counts_calls_and_carries_state():
    seen = []

    def step(x, st):
        seen.append(st[0])
        return np.zeros((1, 2)), x[..., None], [st[0] + 1]
    audio = synthetic_audio(1.0, 1000, 1)
    t, ms = time_stream(step, [0], audio, 100, 1000, warmup=3)
    assert t.calls == 10 and len(ms) == 10 and seen == list(range(13))
    assert t.rtf > 0 and t.streams_per_core == 1 / t.rtf


def test_macs_per_sample_of_the_paper_config():
    from liquid_edge.config import ModelConfig
    from liquid_edge.model import LiquidS4Classifier
    cfg = ModelConfig(d_model=128, n_layers=6, d_state=7, n_ssm=128, d_output=35, liquid_kernel=None)
    macs = StepwiseModel(LiquidS4Classifier(cfg), 160).macs_per_sample()
    # 6 x (GLU 2·128·128 + 128·(36 + 6 + 6 + 1)) + encoder 128 + decoder 35·128
    assert macs["recurrent"] == 6 * (2 * 128 * 128 + 128 * 49) + 128 + 35 * 128
    assert macs["graph"] > macs["recurrent"]


def test_bench_command_reports_and_plots(tmp_path):
    save_checkpoint(random_model(), tmp_path / "m.pt")
    r = CliRunner().invoke(main, ["bench", str(tmp_path / "m.pt"), "--chunk", "16", "--chunk", "32", "--seconds", "0.1",
                                  "--json", "--plot", str(tmp_path / "b.png")])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert [x["chunk"] for x in d["results"]] == [16, 32]
    assert all(x["median_ms"] > 0 and x["p99_ms"] >= x["median_ms"] and x["macs_per_audio_second"] > 0 for x in d["results"])
    assert (tmp_path / "b.png").stat().st_size > 1000


@pytest.mark.slow
def test_benchmark_suite_runs_every_form_in_one_run(tmp_path):
    """bench/run.py end to end on a small model and a short signal (the timings mean nothing here)."""
    save_checkpoint(random_model(liquid_kernel="polyb"), tmp_path / "m.pt")
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--model", str(tmp_path / "m.pt"),
                        "--seconds", "0.5", "--chunks", "16", "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads((tmp_path / next(p.name for p in tmp_path.glob("m-*.json"))).read_text())
    forms = {(x["form"], x["backend"], x["chunk"], x["streams"]) for x in d["rows"]}
    for T in (16, 160):
        assert {("stepwise", b, T, s) for b in ("native", "onnxruntime") for s in (1, 8)} <= forms
        assert ("stepwise", "torch", T, 1) in forms
    assert {("step() loop", b, 1, 1) for b in ("native", "onnxruntime", "torch")} <= forms
    assert any(f.startswith("conv window") for f, *_ in forms)
    assert d["ceiling_gflops"] > 0 and set(d["summary"]) == set(d["targets"])
    assert "targets set for the paper's SC config" in r.stdout
