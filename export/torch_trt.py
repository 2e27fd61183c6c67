"""The second GPU path: the stepwise module compiled by torch-tensorrt and saved as an exported program."""
from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import load_checkpoint


class TorchTrtUnavailable(RuntimeError):
    """torch-tensorrt or a CUDA GPU is missing; the message is one line."""


def compile_torch_trt(ckpt, out, chunk: int, batch: int, precision: str, liquid_mode, window, official_aux) -> Path:
    try:
        import torch_tensorrt
    except (ImportError, OSError) as e:
        raise TorchTrtUnavailable(f"torch-tensorrt is not installed ({str(e).splitlines()[0]})") from None
    if not torch.cuda.is_available():
        raise TorchTrtUnavailable("no CUDA GPU found")
    from .pipeline import build_module, output_path
    module = build_module(load_checkpoint(ckpt, official_aux), chunk, liquid_mode, window).cuda().eval()
    inputs = [torch.zeros(batch, chunk, device="cuda"), *(s.cuda() for s in module.initial_state(batch))]
    dtypes = {torch.float16, torch.float32} if precision == "fp16" else {torch.float32}
    trt_module = torch_tensorrt.compile(module, ir="dynamo", inputs=inputs, enabled_precisions=dtypes)
    path = output_path(out, ckpt, chunk, precision, ".ep")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch_tensorrt.save(trt_module, str(path), inputs=inputs)
    return path
