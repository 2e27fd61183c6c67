"""The `liquid-edge` command. Every failure the user can cause is one line on stderr and exit 2."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

import click

from . import __version__

EXIT_BAD_INPUT = 2


class UserError(click.ClickException):
    exit_code = EXIT_BAD_INPUT

    def show(self, file=None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _load(ckpt: str, official_aux: str | None):
    from .checkpoint import CheckpointError, load_checkpoint
    try:
        return load_checkpoint(ckpt, official_aux)
    except CheckpointError as e:
        raise UserError(str(e)) from None


ckpt_arg = click.argument("ckpt", type=click.Path(dir_okay=False))
aux_opt = click.option("--official-aux", type=click.Path(dir_okay=False), default=None,
                       help="Official liquid coefficients file (official liquid checkpoints only).")


class OneLineErrors(click.Group):
    """Every user-caused failure of every command is one line on stderr: click's usage errors
    (normally a usage block), file-system errors (an unwritable output folder, a full disk) and a
    missing optional library."""

    def main(self, args=None, prog_name=None, **extra):
        try:
            rv = super().main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
        except click.UsageError as e:
            click.echo(f"error: {e.format_message()}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(130)
        except OSError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except ImportError as e:   # e.g. a device install without torch running a checkpoint command
            hint = " (the runtime commands on exported models need only numpy and onnxruntime)" if e.name == "torch" else ""
            click.echo(f"error: this command needs {e.name or e}, which is not installed{hint}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=OneLineErrors)
@click.version_option(__version__, prog_name="liquid-edge")
def main() -> None:
    """Liquid-S4 from training to the edge: inspect, convert, check, export."""


@main.command()
@ckpt_arg
@aux_opt
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(ckpt: str, official_aux: str | None, as_json: bool) -> None:
    """Describe a checkpoint: architecture, size, liquid settings, causality, streaming."""
    from .describe import describe
    d = describe(_load(ckpt, official_aux))
    if as_json:
        click.echo(json.dumps(d))
        return
    click.echo(f"checkpoint:      {ckpt}")
    click.echo(f"architecture:    {d['architecture']}")
    click.echo(f"parameters:      {d['parameters']:,}")
    click.echo(f"liquid:          {d['liquid']}")
    click.echo(f"causal:          {'yes' if d['causal'] else 'no'} (measured by perturbing one input sample)")
    click.echo(f"exact streaming: {'yes' if d['exact_streaming'] else 'no: ' + d['streaming_blocker']}")
    cfg = d["config"]
    if cfg.get("features") == "logmel":
        click.echo(f"input:           {cfg['n_mels']} log-mel bands ({cfg['win']}-sample frames every {cfg['hop']}) "
                   f"of {cfg['sample_rate']} Hz audio, trained length {cfg['l_max']} frames")
    else:
        click.echo(f"input:           {cfg['d_input']} channel(s) at {cfg['sample_rate']} Hz, trained length {cfg['l_max']}")
    if cfg["labels"]:
        click.echo(f"labels:          {', '.join(cfg['labels'])}")


@main.command()
@click.argument("model_path", type=click.Path(dir_okay=False))
@click.argument("file", type=click.Path(dir_okay=False))
@aux_opt
@click.option("--json", "as_json", is_flag=True, help="Print {labels, logits, top, backend}.")
def classify(model_path: str, file: str, official_aux: str | None, as_json: bool) -> None:
    """Classify one clip (.wav, or .npy of float samples) with a checkpoint or an exported model.

    An exported model (.onnx, .npz, .engine) streams the clip from a zero state through its step graph
    and reports the pooled logits after the last sample; it runs without torch."""
    from .runtime.audio import AudioError, load_clip
    from .runtime.stream import EXPORTED
    if Path(model_path).suffix in EXPORTED:
        from .runtime.session import ModelError
        from .runtime.stream import classify_clip, open_model
        try:
            m = open_model(model_path)
            logits, pad = classify_clip(m, load_clip(file, m.sample_rate))
        except (ModelError, AudioError) as e:
            raise UserError(str(e)) from None
        _print_scores(m.labels, [float(v) for v in logits], m.backend, as_json)
        return
    import torch
    model = _load(model_path, official_aux)
    try:
        x = load_clip(file, model.cfg.sample_rate)
    except AudioError as e:
        raise UserError(str(e)) from None
    if model.cfg.features == "raw" and model.cfg.d_input != 1:
        raise UserError(f"{model_path}: model takes {model.cfg.d_input} input channels, a clip has 1")
    with torch.no_grad():
        logits = model(torch.from_numpy(x)[None]).double()[0].tolist()
    _print_scores(model.cfg.labels or [str(i) for i in range(len(logits))], logits, "torch-conv", as_json)


@main.command()
@ckpt_arg
@aux_opt
@click.option("--backends", default="torch,onnx,native,trt", show_default=True, help="Comma-separated stepwise backends.")
@click.option("--chunk", "chunks", default="1,160,1000", show_default=True, help="Comma-separated chunk lengths.")
@click.option("--seconds", type=float, default=None, help="Stream length [default: 10x the training length].")
@click.option("--liquid-mode", type=click.Choice(["exact", "causal", "window"]), default=None,
              help="For models that cannot stream exactly: causal re-interpretation or windowed inference.")
@click.option("--window", type=int, default=None, help="Pooling / inference window in samples [default: l_max].")
@click.option("--audio", "audio_files", multiple=True, type=click.Path(dir_okay=False), help="Add a stream from an audio file.")
@click.option("--batch", type=int, default=2, show_default=True, help="Random streams.")
@click.option("--tol", type=float, default=1e-4, show_default=True, help="Max abs logit error allowed.")
@click.option("--max-calls", type=int, default=4000, show_default=True, help="Cap on calls per chunk size.")
@click.option("--corrupt-state", type=float, default=0.0, hidden=True,
              help="Self-test: start from a noisy state; parity must fail.")
@click.option("--json", "as_json", is_flag=True)
def parity(ckpt, official_aux, backends, chunks, seconds, liquid_mode, window, audio_files, batch, tol, max_calls,
           corrupt_state, as_json) -> None:
    """Check that every stepwise backend computes what the convolution form computes.

    Exit 0 when every backend that ran is within tolerance, 1 when one is not, 2 on bad input.
    """
    from .export.parity import format_report, run_parity
    from .export.stepwise import StreamingError
    from .runtime.audio import AudioError, load_clip
    model = _load(ckpt, official_aux)
    try:
        chunk_list = [int(c) for c in chunks.split(",") if c.strip()]
    except ValueError:
        raise UserError(f"--chunk takes comma-separated integers, not {chunks!r}") from None
    try:
        audio = [load_clip(f, model.cfg.sample_rate) for f in audio_files]
        samples = int(round(seconds * model.cfg.sample_rate)) if seconds else None
        rep = run_parity(model, [b.strip() for b in backends.split(",") if b.strip()], chunk_list, samples,
                         liquid_mode, audio, batch, tol, max_calls, corrupt_state, window=window,
                         progress=None if as_json else lambda m: click.echo(f"  running {m}", err=True))
    except (StreamingError, AudioError) as e:
        raise UserError(str(e)) from None
    click.echo(json.dumps(rep.to_dict()) if as_json else format_report(rep))
    sys.exit(0 if rep.ok else 1)


@main.command()
@ckpt_arg
@aux_opt
@click.option("--target", type=click.Choice(["onnx", "trt", "torch-trt", "native"]), default="onnx", show_default=True)
@click.option("-o", "--out", default="exported", show_default=True, help="Output directory, or a .onnx (.npz) file path.")
@click.option("--chunk", type=int, default=160, show_default=True, help="Samples per call (static).")
@click.option("--batch", default="1", show_default=True, help="Streams per call: an integer, or 'dynamic'.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True)
@click.option("--liquid-mode", type=click.Choice(["exact", "causal", "window"]), default=None,
              help="For models that cannot stream exactly (see `liquid-edge info`).")
@click.option("--window", type=int, default=None, help="Pooling window in samples [default: l_max].")
@click.option("--tol", type=float, default=None, help="Max abs logit error at the export parity check "
              "[default: 1e-4 fp32, 2e-2 fp16].")
@click.option("--opt-batch", type=int, default=1, show_default=True, help="TensorRT profile: optimal batch (dynamic batch).")
@click.option("--max-batch", type=int, default=16, show_default=True, help="TensorRT profile: largest batch (dynamic batch).")
def export(ckpt, official_aux, target, out, chunk, batch, precision, liquid_mode, window, tol, opt_batch, max_batch) -> None:
    """Export the streaming step graph: ONNX (always), then a TensorRT engine or torch-tensorrt program;
    or, with --target native, the constants of the fused CPU kernel (NAME.npz, any batch, fp32).

    Exit 0 on success, 1 when a check fails, 2 on bad input, 3 when TensorRT / a GPU is missing (the
    ONNX graph and manifest are still written and the trtexec command to run on the target is printed).
    """
    from .checkpoint import CheckpointError
    from .export.pipeline import ExportError, export_onnx_checked, output_path
    from .export.tensorrt import EXIT_NO_TENSORRT, TensorRTUnavailable, build_engine, build_options, default_timing_cache, trtexec_command
    if batch != "dynamic" and not batch.isdigit():
        raise UserError(f"--batch takes a positive integer or 'dynamic', not {batch!r}")
    nbatch = None if batch == "dynamic" else int(batch)
    if chunk < 1 or (nbatch is not None and nbatch < 1):
        raise UserError("--chunk and --batch must be positive")
    log = lambda m: click.echo(m, err=True)  # noqa: E731
    from .export.stepwise import StreamingError
    if target == "native":
        _export_native(ckpt, out, chunk, precision, liquid_mode, window, official_aux, tol, log)
        return
    try:
        res = export_onnx_checked(ckpt, out, chunk, nbatch, precision, liquid_mode, window, official_aux, tol, log)
    except (CheckpointError, StreamingError) as e:
        raise UserError(str(e)) from None
    except ExportError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    st = res.stats
    click.echo(f"wrote {res.onnx_path} ({st['file_bytes'] / 1e6:.2f} MB, {st['nodes']} nodes, "
               f"exported in {st['export_seconds']:.1f} s) and {res.onnx_path.with_suffix('.json').name}")
    if target == "onnx":
        return
    if target == "trt":
        engine = output_path(out, ckpt, chunk, precision, ".engine")
        cache = default_timing_cache()
        try:
            side = build_engine(res.onnx_path, engine, res.manifest, precision, opt_batch, max_batch, cache)
        except TensorRTUnavailable as e:
            opts = build_options("10.0", precision, res.manifest, opt_batch, max_batch, str(cache))
            click.echo("build the engine on the target (e.g. the Jetson) with:", err=True)
            click.echo(trtexec_command(res.onnx_path, engine, opts))
            click.echo(f"error: no TensorRT engine built: {e}", err=True)
            sys.exit(EXIT_NO_TENSORRT)
        click.echo(f"wrote {engine} (TensorRT {side['tensorrt']['version']}, {side['tensorrt']['gpu']['name']})")
        return
    from .export.torch_trt import TorchTrtUnavailable, compile_torch_trt
    try:
        path = compile_torch_trt(ckpt, out, chunk, nbatch or 1, precision, liquid_mode, window, official_aux)
    except StreamingError as e:
        raise UserError(str(e)) from None
    except TorchTrtUnavailable as e:
        click.echo(f"compile on the target with: liquid-edge export {ckpt} --target torch-trt -o {out} --chunk {chunk}", err=True)
        click.echo(f"error: no torch-tensorrt program built: {e}", err=True)
        sys.exit(EXIT_NO_TENSORRT)
    click.echo(f"wrote {path}")


def _export_native(ckpt, out, chunk, precision, liquid_mode, window, official_aux, tol, log) -> None:
    from .checkpoint import CheckpointError
    from .export.native import export_native_checked
    from .export.pipeline import ExportError
    from .export.stepwise import StreamingError
    from .runtime.session import ModelError
    if precision != "fp32":
        raise UserError("the native kernel computes in fp32 (--precision fp16 is for ONNX / TensorRT)")
    try:
        path, man = export_native_checked(ckpt, out, chunk, liquid_mode, window, official_aux, tol or 1e-4, log)
    except (CheckpointError, StreamingError, ModelError) as e:
        raise UserError(str(e)) from None
    except ExportError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) and {path.with_suffix('.json').name}")


def _thresholds(spec: str | None) -> tuple[float | None, dict[str, float]]:
    """'0.8' or 'yes=0.9,no=0.7' (or both: '0.8,yes=0.9')."""
    base, per = None, {}
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "=" in part:
                k, v = part.split("=", 1)
                per[k.strip()] = float(v)
            else:
                base = float(part)
        except ValueError:
            raise UserError(f"--threshold takes 0.8 or keyword=0.8 pairs, not {part!r}") from None
    return base, per


@main.command()
@click.argument("model_path", type=click.Path(dir_okay=False))
@click.argument("audio", nargs=-1)
@click.option("--mic", is_flag=True, help="Listen to the default microphone (needs the 'mic' extra).")
@click.option("--rate", type=int, default=16000, show_default=True, help="Sample rate of raw PCM on stdin / the microphone.")
@click.option("--pcm", type=click.Choice(["int16", "float32"]), default="int16", show_default=True, help="stdin sample format.")
@click.option("--keywords", default=None, help="Comma-separated keywords [default: every non-background label].")
@click.option("--threshold", default=None, help="0.8, or per keyword: yes=0.9,no=0.7 [default: the manifest's].")
@click.option("--smoothing", type=int, default=None, help="Chunks to average probabilities over.")
@click.option("--patience", type=int, default=None, help="Consecutive chunks above threshold.")
@click.option("--refractory", type=float, default=None, help="Seconds without detections after one.")
@click.option("--warmup", type=float, default=None, help="Seconds without detections after a reset.")
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per detection.")
def spot(model_path, audio, mic, rate, pcm, keywords, threshold, smoothing, patience, refractory, warmup, threads, as_json) -> None:
    """Spot keywords in audio files (any rate, mono or stereo), raw PCM on stdin ('-') or a microphone."""
    from .runtime.audio import AudioError
    from .runtime.detect import DetectionConfig
    from .runtime.session import ModelError
    from .runtime.stream import file_source, mic_source, open_model, spot as run_spot, stdin_source
    if not audio and not mic:
        raise UserError("give audio files, '-' for raw PCM on stdin, or --mic")
    base, per = _thresholds(threshold)
    try:
        m = open_model(model_path, threads)
        sec = m.chunk / m.sample_rate
        man = dict(m.manifest, detection=dict(m.manifest.get("detection", {}), **({"threshold": base} if base is not None else {})))
        det = DetectionConfig.from_manifest(
            man, [k.strip() for k in keywords.split(",")] if keywords else None, per,
            smoothing_chunks=smoothing, patience=patience,
            refractory_chunks=None if refractory is None else int(round(refractory / sec)),
            warmup_chunks=None if warmup is None else int(round(warmup / sec)))
        sources = [mic_source(rate)] if mic else [stdin_source(rate, pcm) if a == "-" else file_source(a) for a in audio]
        def show(ev):
            click.echo(json.dumps(ev) if as_json else f"{ev['time']:9.2f} s  {ev['keyword']:<12s} {ev['score']:.3f}  {ev['stream']}")
            sys.stdout.flush()
        run_spot(m, sources, det, show)
    except (ModelError, AudioError, ValueError) as e:
        raise UserError(str(e)) from None
    except KeyboardInterrupt:
        pass


@main.command()
@click.argument("model_path", type=click.Path(dir_okay=False))
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.option("--task", type=click.Choice(["12", "all"]), default="12", show_default=True)
@click.option("--plot", "plot_path", default=None, help="PNG of false rejects vs false accepts per hour.")
@click.option("--max-clips", type=int, default=None, help="Evaluate at most this many test clips per class.")
@click.option("--json", "as_json", is_flag=True)
def evaluate(model_path, data_dir, task, plot_path, max_clips, as_json) -> None:
    """Accuracy on the test split (state reset per clip, and carried across clips), and false rejects
    against false accepts per hour on long recordings (DATA_DIR/_long_/*.wav with .txt marks)."""
    from .dataset import DataError, load
    from .runtime.detect import DetectionConfig
    from .runtime.evaluate import accuracy_carried, accuracy_reset, frr_fa_curve, plot_curve
    from .runtime.session import ModelError
    from .runtime.stream import open_model
    try:
        m = open_model(model_path)
        from .config import ModelConfig   # no torch: the config is plain data
        mc = ModelConfig.from_dict(m.manifest["model_config"])
        clip = mc.l_max * mc.samples_per_step
        test = load(data_dir, "test", task, sample_rate=m.sample_rate, length=clip, max_per_class=max_clips)
        if test.labels != m.labels:
            raise UserError(f"data labels {test.labels} differ from the model's {m.labels}")
        pad = (-test.x.shape[1]) % m.chunk
        x = np.pad(test.x, ((0, 0), (0, pad)))
        out = {"clips": int(len(test.y)), "accuracy_reset": accuracy_reset(m, x, test.y),
               "accuracy_carried": accuracy_carried(m, x, test.y)}
        longs = sorted((Path(data_dir) / "_long_").glob("*.wav"))
        if longs:
            res = frr_fa_curve(m, longs, DetectionConfig.from_manifest(m.manifest))
            out["long"] = {"recordings": len(longs), "hours": res.hours, "keywords": res.keywords,
                           "curve": [{"threshold": t, "frr": r, "fa_per_hour": f}
                                     for t, r, f in zip(res.thresholds, res.frr, res.fa_per_hour)]}
            if plot_path:
                plot_curve(res, plot_path, f"{Path(model_path).name} on {len(longs)} recording(s)")
                out["plot"] = plot_path
    except (ModelError, DataError) as e:
        raise UserError(str(e)) from None
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"test clips: {out['clips']}")
    click.echo(f"accuracy, state reset per clip:       {out['accuracy_reset']:.2%}")
    click.echo(f"accuracy, state carried across clips: {out['accuracy_carried']:.2%}")
    if "long" in out:
        L = out["long"]
        click.echo(f"long recordings: {L['recordings']} ({L['hours'] * 60:.1f} min, {L['keywords']} keywords)")
        click.echo("  threshold   FRR     FA/hour")
        for row in L["curve"]:
            click.echo(f"  {row['threshold']:9.2f}  {row['frr']:6.1%}  {row['fa_per_hour']:8.1f}")
        if plot_path:
            click.echo(f"plot: {plot_path}")


@main.command()
@click.argument("model_path", type=click.Path(dir_okay=False))
@click.option("--backend", type=click.Choice(["torch", "onnx", "native", "trt"]), default=None,
              help="[default: torch for a checkpoint, onnx for .onnx, native for .npz, trt for an engine]")
@click.option("--chunk", "chunks", multiple=True, type=int, help="Chunk length(s) (checkpoints) [default: 160].")
@click.option("--streams", type=int, default=1, show_default=True, help="Streams per call (batched).")
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--seconds", type=float, default=10.0, show_default=True, help="Synthetic audio per stream.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--plot", "plot_path", default=None, help="PNG: latency distribution and latency vs chunk.")
def bench(model_path, backend, chunks, streams, threads, seconds, as_json, plot_path) -> None:
    """Per-chunk latency (median, p90, p99, max), real-time factor, streams per core, peak memory and
    multiply-adds per second of audio, streaming synthetic audio after a warm-up."""
    import shutil
    import subprocess
    import tempfile
    from .runtime.benchmark import parse_trtexec, synthetic_audio, time_stream, trtexec_bench_command
    from .runtime.session import ModelError
    from .runtime.stream import EXPORTED
    suffix = Path(model_path).suffix
    exported = suffix in EXPORTED
    backend = backend or {".onnx": "onnx", ".npz": "native"}.get(suffix, "trt" if exported else "torch")
    results, dists, extra = [], {}, {}
    try:
        if exported:
            from .runtime.stream import open_model
            m = open_model(model_path, threads)
            runs = [(m.chunk, m.step, m.initial_state(streams), m.sample_rate, None)]
        else:
            import torch
            from .export.stepwise import StepwiseModel
            torch.set_num_threads(threads)
            model = _load(model_path, None)
            runs = []
            for T in chunks or (160,):
                step = StepwiseModel(model, T)
                macs = step.macs_per_sample()["recurrent"]
                if backend == "torch":
                    @torch.no_grad()
                    def fn(x, st, step=step):
                        lo, f, *s2 = step(torch.from_numpy(x), *st)
                        return lo, f, s2
                    runs.append((T, fn, step.initial_state(streams), model.cfg.sample_rate, macs))
                elif backend == "trt":
                    raise UserError("benchmark a TensorRT engine: export it (--target trt), then bench the .engine")
                else:   # exported to a temporary folder first: what a deployment runs
                    from .export.pipeline import open_exported
                    suffix = ".onnx" if backend == "onnx" else ".npz"
                    sess = open_exported(step, Path(tempfile.mkdtemp()) / f"b{T}{suffix}", threads)
                    runs.append((T, sess.step, sess.initial_state(streams), model.cfg.sample_rate, macs))
        for T, fn, st, sr, macs in runs:
            audio = synthetic_audio(seconds, sr, streams)
            timing, ms = time_stream(fn, st, audio, T, sr, threads=threads)
            d = timing.to_dict()
            if macs is None and exported:
                macs = m.manifest.get("macs_per_sample")
            d["macs_per_audio_second"] = macs * sr if macs else None
            d["backend"] = backend
            results.append(d)
            dists[T] = ms
        if backend == "trt" and exported and shutil.which("trtexec"):
            shapes = ",".join(f"{i['name']}:{'x'.join(str(streams if x == 'batch' else x) for x in i['shape'])}"
                              for i in m.manifest["inputs"])
            r = subprocess.run(trtexec_bench_command(model_path, shapes), capture_output=True, text=True)
            extra["trtexec"] = parse_trtexec(r.stdout)
    except (ModelError, ValueError) as e:
        raise UserError(str(e)) from None
    if plot_path:
        _plot_bench(dists, results, plot_path)
    if as_json:
        click.echo(json.dumps({"model": model_path, "results": results, **extra}))
        return
    click.echo(f"{'backend':8s} {'chunk':>6s} {'streams':>7s} {'med ms':>8s} {'p90 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} "
               f"{'RTF':>7s} {'streams/core':>12s} {'peak MB':>8s} {'GMAC/s audio':>12s}")
    for d in results:
        gm = f"{d['macs_per_audio_second'] / 1e9:.3f}" if d["macs_per_audio_second"] else "-"
        click.echo(f"{d['backend']:8s} {d['chunk']:6d} {d['streams']:7d} {d['median_ms']:8.3f} {d['p90_ms']:8.3f} "
                   f"{d['p99_ms']:8.3f} {d['max_ms']:8.3f} {d['rtf']:7.4f} {d['streams_per_core']:12.1f} "
                   f"{d['peak_rss_mb']:8.0f} {gm:>12s}")
    if "trtexec" in extra:
        click.echo(f"trtexec: {extra['trtexec']}")


def _plot_bench(dists: dict, results: list, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    for T, ms in dists.items():
        a.hist(ms, bins=50, alpha=0.6, label=f"chunk {T}")
    a.set_xlabel("latency per chunk (ms)")
    a.set_ylabel("calls")
    a.legend(fontsize=8)
    Ts = [d["chunk"] for d in results]
    b.plot(Ts, [d["median_ms"] for d in results], "o-", label="median")
    b.plot(Ts, [d["p99_ms"] for d in results], "s--", label="p99")
    b.set_xscale("log")
    b.set_xlabel("chunk (samples)")
    b.set_ylabel("latency (ms)")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@main.group()
def data() -> None:
    """Keyword data sets."""


@data.command("synth")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--words", default="yes,no,up,down,left,right,on,off,stop,go", show_default=True)
@click.option("--per-word", type=int, default=100, show_default=True, help="Clips per keyword.")
@click.option("--unknown-words", default=None, help="Comma-separated non-keywords [default: the SC auxiliary words].")
@click.option("--long-streams", type=int, default=2, show_default=True, help="60 s evaluation recordings.")
@click.option("--seed", type=int, default=0, show_default=True)
def data_synth(out_dir, words, per_word, unknown_words, long_streams, seed) -> None:
    """Generate a keyword data set with espeak-ng, in the Speech Commands layout."""
    from .synth import SynthError, synthesize
    wl = [w.strip() for w in words.split(",") if w.strip()]
    if not wl or per_word < 1:
        raise UserError("need at least one word and --per-word >= 1")
    uw = None if unknown_words is None else [w.strip() for w in unknown_words.split(",") if w.strip()]
    try:
        counts = synthesize(out_dir, wl, per_word, uw, long_streams=long_streams, seed=seed,
                            progress=lambda k, n: click.echo(f"\r  {k}/{n} clips", err=True, nl=False))
    except SynthError as e:
        raise UserError(str(e)) from None
    click.echo("", err=True)
    click.echo(f"wrote {out_dir}: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + f", {long_streams} long streams")


@main.command("train")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help="YAML: model / data / train.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None, help="Data folder (overrides data.dir).")
@click.option("--out", default="model.pt", show_default=True, help="Best checkpoint (and OUT.last.pt, the training state).")
@click.option("--resume", type=click.Path(dir_okay=False), default=None, help="Continue from an OUT.last.pt.")
@click.argument("overrides", nargs=-1)
def train_cmd(config_path, data_dir, out, resume, overrides) -> None:
    """Train a Liquid-S4 keyword classifier. OVERRIDES: section.key=value, e.g. train.epochs=5."""
    from .config import ConfigError
    from .dataset import DataError
    from .train import read_config, train
    try:
        mc, dc, tc = read_config(config_path, list(overrides))
        if data_dir:
            dc.dir = data_dir
        if not dc.dir:
            raise ConfigError("no data folder: pass --data DIR or set data.dir")
        summary = train(mc, dc, tc, out, resume)
    except (ConfigError, DataError) as e:
        raise UserError(str(e)) from None
    if int(os.environ.get("RANK", "0")) != 0:   # under torchrun only the first process reports
        return
    best = summary["best_val_accuracy"]
    acc = f"best validation accuracy {best:.2%}" if best >= 0 else "no full epoch, so no validation yet"
    click.echo(f"trained {summary['steps']} steps in {summary['seconds']:.1f} s; {acc}; wrote {out}")


def _print_scores(labels: list[str], logits: list[float], backend: str, as_json: bool) -> None:
    top = labels[max(range(len(logits)), key=logits.__getitem__)]
    if as_json:
        click.echo(json.dumps({"labels": labels, "logits": logits, "top": top, "backend": backend}))
        return
    for i in sorted(range(len(logits)), key=lambda i: -logits[i])[:5]:
        click.echo(f"{labels[i]:>12s}  {logits[i]: .4f}")
    click.echo(f"top: {top}  ({backend})")


if __name__ == "__main__":
    sys.exit(main())
