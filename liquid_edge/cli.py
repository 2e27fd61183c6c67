"""The `liquid-edge` command. Every failure the user can cause is one line on stderr and exit 2."""
from __future__ import annotations

import json
import sys
from pathlib import Path

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


@click.group()
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
    click.echo(f"input:           {cfg['d_input']} channel(s) at {cfg['sample_rate']} Hz, trained length {cfg['l_max']}")
    if cfg["labels"]:
        click.echo(f"labels:          {', '.join(cfg['labels'])}")


@main.command()
@click.argument("model_path", type=click.Path(dir_okay=False))
@click.argument("file", type=click.Path(dir_okay=False))
@aux_opt
@click.option("--json", "as_json", is_flag=True, help="Print {labels, logits, top, backend}.")
def classify(model_path: str, file: str, official_aux: str | None, as_json: bool) -> None:
    """Classify one clip (.wav, or .npy of float samples) with a checkpoint."""
    import torch
    from .runtime.audio import AudioError, load_clip
    model = _load(model_path, official_aux)
    try:
        x = load_clip(file, model.cfg.sample_rate)
    except AudioError as e:
        raise UserError(str(e)) from None
    if model.cfg.d_input != 1:
        raise UserError(f"{model_path}: model takes {model.cfg.d_input} input channels, a clip has 1")
    with torch.no_grad():
        logits = model(torch.from_numpy(x)[None]).double()[0].tolist()
    _print_scores(model.cfg.labels or [str(i) for i in range(len(logits))], logits, "torch-conv", as_json)


@main.command()
@ckpt_arg
@aux_opt
@click.option("--backends", default="torch,onnx,trt", show_default=True, help="Comma-separated stepwise backends.")
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
@click.option("--target", type=click.Choice(["onnx", "trt", "torch-trt"]), default="onnx", show_default=True)
@click.option("-o", "--out", default="exported", show_default=True, help="Output directory, or a .onnx file path.")
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
    """Export the streaming step graph: ONNX (always), then a TensorRT engine or torch-tensorrt program.

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
    try:
        res = export_onnx_checked(ckpt, out, chunk, nbatch, precision, liquid_mode, window, official_aux, tol, log)
    except CheckpointError as e:
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
    except TorchTrtUnavailable as e:
        click.echo(f"compile on the target with: liquid-edge export {ckpt} --target torch-trt -o {out} --chunk {chunk}", err=True)
        click.echo(f"error: no torch-tensorrt program built: {e}", err=True)
        sys.exit(EXIT_NO_TENSORRT)
    click.echo(f"wrote {path}")


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
