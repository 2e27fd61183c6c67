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
