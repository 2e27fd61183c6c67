"""Checkpoints: ours (weights + full config) and the official Liquid-S4 Lightning `.ckpt`.

A checkpoint is untrusted input: everything is read with `torch.load(weights_only=True)`; the
official files' omegaconf objects are allowed by an explicit list of types, never a blanket unpickle.
"""
from __future__ import annotations

import collections
import hashlib
import os
import tempfile
import typing
from pathlib import Path

import torch

from . import __version__
from .config import ConfigError, ModelConfig
from .model import LiquidS4Classifier

FORMAT = "liquid-edge/1"
AUX_KEYS = ("B", "C", "w", "log_dt")
AUX_SNIPPET = (
    "aux = {n: {k: getattr(m.kernel, k).detach().cpu() for k in ('B', 'C', 'w', 'log_dt')} "
    "for n, m in lit_module.named_modules() if type(m).__name__ == 'S4'}; torch.save(aux, 'liquid_aux.pt')"
)


class CheckpointError(Exception):
    """A file that cannot be turned into a model; the message is one line for the user."""


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: str | Path, write: typing.Callable[[str], None]) -> None:
    """Call write(tmp) on a temporary file beside path, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp makes 0600; the artifact is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(model: LiquidS4Classifier, path: str | Path, extra: dict | None = None) -> None:
    """Our format: {'format', 'config', 'state_dict', 'liquid_edge_version', 'extra'}; weights_only-safe."""
    blob = {
        "format": FORMAT,
        "config": model.cfg.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "liquid_edge_version": __version__,
        "extra": extra or {},
    }
    atomic_write(path, lambda tmp: torch.save(blob, tmp))


def _safe_load(path: Path) -> typing.Any:
    try:
        from omegaconf import DictConfig, ListConfig
        from omegaconf.base import ContainerMetadata, Metadata
        from omegaconf.nodes import AnyNode
        allowed = [DictConfig, ListConfig, ContainerMetadata, Metadata, AnyNode, typing.Any,
                   dict, list, int, float, str, bool, collections.defaultdict]
    except ImportError:
        allowed = []
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a checkpoint we accept"
        if "omegaconf" in str(e) and not allowed:
            raise CheckpointError(f"{path}: official checkpoint needs omegaconf: pip install 'liquid-edge[official]'") from None
        if "Unsupported global" in str(e):  # a pickle that wants code run: refuse and say which
            glob = str(e).split("GLOBAL", 1)[-1].split()[0] if "GLOBAL" in str(e) else "?"
            raise CheckpointError(f"{path}: refused: the file asks to unpickle {glob}, which is not allow-listed") from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(e).__name__})") from None


def load_checkpoint(path: str | Path, official_aux: str | Path | None = None) -> LiquidS4Classifier:
    """Load ours or an official Lightning .ckpt into an eval-mode model on the CPU.

    official_aux: the file of official liquid coefficients (see AUX_SNIPPET), needed for official
    liquid models.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    blob = _safe_load(path)
    if not isinstance(blob, dict):
        raise CheckpointError(f"{path}: not a checkpoint (holds a {type(blob).__name__})")
    if blob.get("format") == FORMAT:
        cfg = _config(path, blob.get("config"))
        sd = blob.get("state_dict")
    elif "state_dict" in blob and "hyper_parameters" in blob:
        cfg = official_config(path, blob["hyper_parameters"], blob["state_dict"])
        sd = dict(blob["state_dict"])
        if cfg.liquid_kernel is not None:
            sd.update(_official_aux(path, official_aux, cfg))
    else:
        raise CheckpointError(f"{path}: not a liquid-edge or Liquid-S4 checkpoint (keys: {', '.join(map(str, list(blob)[:6]))})")
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: checkpoint has no state_dict")
    model = LiquidS4Classifier(cfg)
    _load_state(path, model, sd)
    return model.eval()


def _config(path: Path, d: typing.Any) -> ModelConfig:
    if not isinstance(d, dict):
        raise CheckpointError(f"{path}: checkpoint has no model config")
    try:
        return ModelConfig.from_dict(d)
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{path}: {e}") from None


def _load_state(path: Path, model: LiquidS4Classifier, sd: dict) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing:
        raise CheckpointError(f"{path}: missing {len(missing)} key(s), e.g. {missing[0]}")
    if unexpected:
        raise CheckpointError(f"{path}: unexpected {len(unexpected)} key(s), e.g. {unexpected[0]}")
    for k, v in own.items():
        if not isinstance(sd[k], torch.Tensor) or tuple(sd[k].shape) != tuple(v.shape):
            got = tuple(sd[k].shape) if isinstance(sd[k], torch.Tensor) else type(sd[k]).__name__
            raise CheckpointError(f"{path}: {k} has shape {got}, the config needs {tuple(v.shape)}")
    model.load_state_dict(sd)


# ---- official checkpoints ---------------------------------------------------------------------
def official_config(path: Path, hp: typing.Any, sd: dict) -> ModelConfig:
    """ModelConfig from an official hyper_parameters DictConfig (or plain dict) and its state_dict."""
    try:
        from omegaconf import OmegaConf
        hp = OmegaConf.to_container(hp, resolve=True) if not isinstance(hp, dict) else hp
    except ImportError:
        pass
    model = hp.get("model") or {}
    layer = model.get("layer") or {}
    if isinstance(layer, list):
        layer = layer[0] if len(layer) == 1 else {}
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise CheckpointError(f"{path}: unsupported official option: {what}")
    need(layer.get("_name_", "s4") == "s4", f"layer {layer.get('_name_')!r} (only s4)")
    need(layer.get("mode", "nplr") == "nplr", f"mode {layer.get('mode')!r} (only nplr)")
    need(layer.get("measure", "legs") == "legs", f"measure {layer.get('measure')!r} (only legs)")
    need(layer.get("activation", "gelu") == "gelu", f"activation {layer.get('activation')!r}")
    need(layer.get("postact", "glu") == "glu", f"postact {layer.get('postact')!r}")
    for opt in ("hyper_act", "gate", "bottleneck"):
        need(layer.get(opt) is None, opt)
    need(model.get("residual", "R") in ("R", None), f"residual {model.get('residual')!r}")
    norm = model.get("norm", "layer")
    norm = norm.get("_name_") if isinstance(norm, dict) else norm
    need(norm in ("batch", "layer"), f"norm {norm!r}")
    dec = hp.get("decoder") or {}
    mode = dec.get("mode", "pool") if isinstance(dec, dict) else "pool"
    need(mode in ("pool", "last"), f"decoder mode {mode!r}")
    try:
        enc_w, dec_w = sd["encoder.0.weight"], sd["decoder.0.output_transform.weight"]
    except KeyError as e:
        raise CheckpointError(f"{path}: state_dict lacks {e.args[0]}") from None
    dataset = hp.get("dataset") or {}
    sr = 16000 if dataset.get("_name_") == "sc" else 1
    try:
        return ModelConfig(
            d_input=enc_w.shape[1], d_model=model["d_model"], n_layers=model["n_layers"], d_output=dec_w.shape[0],
            d_state=layer.get("d_state", 64), channels=layer.get("channels", 1),
            bidirectional=bool(layer.get("bidirectional", False)), l_max=layer.get("l_max"),
            n_ssm=layer.get("n_ssm"), rank=layer.get("rank", 1),
            dt_min=layer.get("dt_min", 1e-3), dt_max=layer.get("dt_max", 1e-1),
            liquid_kernel=layer.get("liquid_kernel"), liquid_degree=layer.get("liquid_degree", 2),
            lcontract=layer.get("lcontract"), liquid_mode="official", allcombs=bool(layer.get("allcombs", True)),
            prenorm=bool(model.get("prenorm", True)), norm=norm, dropout=0.0,
            pool="mean" if mode == "pool" else "last", sample_rate=sr)
    except (KeyError, ConfigError, TypeError) as e:
        raise CheckpointError(f"{path}: official config: {e}") from None


def _official_aux(path: Path, aux_path: str | Path | None, cfg: ModelConfig) -> dict:
    """Official liquid coefficients as state-dict entries `model.layers.i.layer.kernel.{B,C,w,log_dt}`."""
    layers = [f"model.layers.{i}.layer" for i in range(cfg.n_layers)]
    if aux_path is None:
        raise CheckpointError(
            f"{path}: official liquid model ({cfg.liquid_kernel}) needs its liquid coefficients, which official "
            f"checkpoints do not hold: pass --official-aux FILE (see README, 'Official checkpoints')")
    blob = _safe_load(Path(aux_path)) if Path(aux_path).is_file() else None
    if blob is None:
        raise CheckpointError(f"{aux_path}: no such file")
    blob = blob.get("wrapper_aux_per_S4_layer", blob)   # the refvector layout nests one level more
    out = {}
    for name in layers:
        entry = blob.get(name)
        if not isinstance(entry, dict):
            raise CheckpointError(f"{aux_path}: no liquid coefficients for {name}")
        for k in AUX_KEYS:
            v = entry.get(k, entry.get(f"kernel.{k}"))
            if not isinstance(v, torch.Tensor):
                raise CheckpointError(f"{aux_path}: {name} lacks kernel.{k}")
            out[f"{name}.kernel.{k}"] = torch.view_as_real(v.resolve_conj()).float() if v.is_complex() else v.float()
    return out
