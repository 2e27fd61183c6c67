"""Training a Liquid-S4 keyword classifier (raw waveform, the paper's setting).

The paper's recipe is the default: AdamW, the SSM parameters (A, B, dt) with their own learning rate
and no weight decay, cosine schedule with linear warm-up. Augmentation: time shift, background noise
at a random SNR, gain. CUDA with mixed precision when present, CPU otherwise; several GPUs or
machines through torchrun (DistributedDataParallel). Everything random is seeded from (seed, epoch,
step), so a run resumed from its last state takes exactly the step it would have taken.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import atomic_write, save_checkpoint
from .config import ConfigError, ModelConfig
from .dataset import KeywordData, load
from .model import LiquidS4Classifier

SSM_PARAMS = ("log_dt", "B", "P", "inv_w_real", "w_imag")   # the official lr dict's dt / A / B


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 16
    lr: float = 0.008
    ssm_lr: float = 0.001
    weight_decay: float = 0.05
    warmup_steps: int = 100
    seed: int = 0
    max_steps: int | None = None          # stop early (tests, smoke runs)
    shift_ms: float = 100.0               # augmentation: random time shift up to this
    noise_prob: float = 0.8               # mix background noise into this fraction of clips
    snr_db: list[float] = field(default_factory=lambda: [5.0, 30.0])
    gain_db: list[float] = field(default_factory=lambda: [-6.0, 6.0])
    amp: bool = True                      # mixed precision on CUDA
    eval_batch_size: int = 64


@dataclass
class DataConfig:
    dir: str | None = None
    task: str = "12"
    words: list[str] | None = None
    max_per_class: int | None = None


def _yaml_loader():
    """A safe loader with YAML 1.2 booleans: only true/false. YAML 1.1 also reads yes, no, on and
    off as booleans, and four of the ten Speech Commands keywords are exactly those words."""
    import re
    import yaml

    class Loader(yaml.SafeLoader):
        pass
    bool_tag = "tag:yaml.org,2002:bool"
    Loader.yaml_implicit_resolvers = {k: [(t, rx) for t, rx in v if t != bool_tag]
                                      for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    Loader.add_implicit_resolver(bool_tag, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
    return Loader


def _yaml(text: str):
    import yaml
    return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass


def read_config(path: str | Path | None, overrides: list[str] = ()) -> tuple[ModelConfig, DataConfig, TrainConfig]:
    """YAML with sections model / data / train; overrides like `train.epochs=3` or `model.d_model=64`."""
    import yaml
    raw = {}
    if path:
        try:
            raw = _yaml(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict) or set(raw) - {"model", "data", "train"}:
        raise ConfigError(f"{path}: config sections must be model, data, train (got {', '.join(map(str, raw))})")
    for ov in overrides:
        key, sep, value = ov.partition("=")
        section, _, name = key.partition(".")
        if not sep or section not in ("model", "data", "train") or not name:
            raise ConfigError(f"override {ov!r} must look like section.key=value (section: model, data, train)")
        raw.setdefault(section, {})[name] = _yaml(value)
    def build(cls, d):
        unknown = set(d or {}) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown {cls.__name__[:-6].lower()} option(s): {', '.join(sorted(unknown))}")
        return cls(**(d or {}))
    return ModelConfig.from_dict(raw.get("model") or {}), build(DataConfig, raw.get("data")), build(TrainConfig, raw.get("train"))


def param_groups(model: torch.nn.Module, tc: TrainConfig) -> list[dict]:
    ssm, decay, no_decay = [], [], []
    for name, p in model.named_parameters():
        if name.split(".")[-1] in SSM_PARAMS and ".kernel.kernel." in name:
            ssm.append(p)
        elif p.dim() < 2:    # biases, norms, D
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": tc.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
            {"params": ssm, "weight_decay": 0.0, "lr": tc.ssm_lr}]


def cosine_warmup(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def augment(x: np.ndarray, noise: list[np.ndarray], tc: TrainConfig, sr: int, rng: np.random.Generator) -> np.ndarray:
    x = x.copy()
    B, L = x.shape
    smax = int(tc.shift_ms * sr / 1000)
    for i in range(B):
        if smax:
            s = int(rng.integers(-smax, smax + 1))
            x[i] = np.roll(x[i], s)
            if s > 0:
                x[i, :s] = 0
            elif s < 0:
                x[i, s:] = 0
        if noise and rng.random() < tc.noise_prob:
            src = noise[int(rng.integers(len(noise)))]
            o = int(rng.integers(0, max(1, len(src) - L)))
            n = np.resize(src[o:o + L], L)
            snr = rng.uniform(*tc.snr_db)
            ps, pn = np.mean(x[i] ** 2) + 1e-8, np.mean(n ** 2) + 1e-8
            x[i] = x[i] + n * np.sqrt(ps / (pn * 10 ** (snr / 10)))
        x[i] *= 10 ** (rng.uniform(*tc.gain_db) / 20)
    return np.clip(x, -1, 1).astype(np.float32)


@torch.no_grad()
def accuracy(model: torch.nn.Module, data: KeywordData, device: torch.device, batch: int = 64) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(data.y), batch):
        logits = model(torch.from_numpy(data.x[i:i + batch]).to(device))
        correct += int((logits.argmax(-1).cpu().numpy() == data.y[i:i + batch]).sum())
    return correct / len(data.y)


class Progress:
    """A one-line progress bar on a terminal; one line per epoch elsewhere (CI logs)."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.tty = stream, stream.isatty()

    def step(self, epoch: int, epochs: int, i: int, n: int, loss: float, rate: float) -> None:
        if self.tty:
            bar = "=" * int(20 * i / n)
            self.stream.write(f"\repoch {epoch}/{epochs} [{bar:<20s}] {i}/{n} loss {loss:.3f} {rate:.1f} clips/s ")
            self.stream.flush()

    def epoch(self, msg: str) -> None:
        self.stream.write(("\r" if self.tty else "") + msg + "\n")
        self.stream.flush()


def train(mc: ModelConfig, dc: DataConfig, tc: TrainConfig, out: str | Path, resume: str | Path | None = None,
          log=Progress()) -> dict:
    """Train; saves the best (validation accuracy) model to `out` and the full training state to
    `out`.last.pt after every epoch (and at max_steps). Returns a summary."""
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = int(os.environ.get("RANK", "0"))
    if ddp:
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    clip = mc.l_max * mc.samples_per_step   # l_max counts model steps: samples, or log-mel frames
    train_set = load(dc.dir, "train", dc.task, dc.words, mc.sample_rate, clip, max_per_class=dc.max_per_class)
    val_set = load(dc.dir, "validation", dc.task, dc.words, mc.sample_rate, clip, max_per_class=dc.max_per_class)
    mc = dataclasses.replace(mc, d_output=len(train_set.labels), labels=train_set.labels)
    torch.manual_seed(tc.seed)
    model = LiquidS4Classifier(mc).to(device)
    opt = torch.optim.AdamW(param_groups(model, tc), lr=tc.lr)
    world = torch.distributed.get_world_size() if ddp else 1
    steps_per_epoch = len(train_set.y) // (tc.batch_size * world)
    if steps_per_epoch == 0:
        raise ConfigError(f"{len(train_set.y)} training clips are fewer than one batch of {tc.batch_size * world}")
    total = tc.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_warmup(s, tc.warmup_steps, total))
    step, best, history = 0, -1.0, []
    if resume:
        st = torch.load(resume, map_location=device, weights_only=True)
        model.load_state_dict(st["state_dict"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        step, best, history = st["step"], st["best"], st["history"]
    net = torch.nn.parallel.DistributedDataParallel(model) if ddp else model
    use_amp = tc.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    t_start = time.perf_counter()
    while step < total and (tc.max_steps is None or step < tc.max_steps):
        epoch, i0 = divmod(step, steps_per_epoch)
        order = np.random.default_rng([tc.seed, epoch]).permutation(len(train_set.y))
        net.train()
        t0, losses = time.perf_counter(), []
        for i in range(i0, steps_per_epoch):
            if tc.max_steps is not None and step >= tc.max_steps:
                break
            rng = np.random.default_rng([tc.seed, epoch, i])
            idx = order[(i * world + rank) * tc.batch_size:(i * world + rank + 1) * tc.batch_size]
            xb = torch.from_numpy(augment(train_set.x[idx], train_set.noise, tc, mc.sample_rate, rng)).to(device)
            yb = torch.from_numpy(train_set.y[idx]).to(device)
            torch.manual_seed(tc.seed * 100003 + step)       # dropout masks depend on the step only
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            losses.append(loss.item())
            if rank == 0:
                log.step(epoch + 1, tc.epochs, i + 1, steps_per_epoch, float(np.mean(losses[-20:])),
                         (i + 1 - i0) * tc.batch_size / (time.perf_counter() - t0))
        epoch_done = step % steps_per_epoch == 0
        if rank == 0:
            acc = accuracy(model, val_set, device, tc.eval_batch_size) if epoch_done else float("nan")
            history.append({"epoch": epoch + 1, "step": step, "loss": float(np.mean(losses)) if losses else None,
                            "val_accuracy": acc, "seconds": time.perf_counter() - t_start})
            if epoch_done:
                log.epoch(f"epoch {epoch + 1}/{tc.epochs}: loss {np.mean(losses):.4f}, validation accuracy {acc:.2%}")
            if epoch_done and acc > best:
                best = acc
                save_checkpoint(model, out, extra={"epoch": epoch + 1, "val_accuracy": acc, "data": str(dc.dir),
                                                   "train": dataclasses.asdict(tc)})
            state = {"state_dict": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "step": step, "best": best, "history": history}
            atomic_write(str(out) + ".last.pt", lambda p: torch.save(state, p))
    if rank == 0 and not Path(out).exists():   # stopped before the first epoch ended: keep what there is
        save_checkpoint(model, out, extra={"steps": step, "data": str(dc.dir), "train": dataclasses.asdict(tc)})
    if ddp:
        torch.distributed.destroy_process_group()
    return {"steps": step, "best_val_accuracy": best, "history": history, "labels": train_set.labels,
            "seconds": time.perf_counter() - t_start}
