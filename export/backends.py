"""Stepwise backends for the parity harness: each runs one chunk from numpy states to numpy states.

A backend says why it is unavailable (a missing library, no GPU) instead of failing, so the harness
can list it as skipped. New backends register themselves in BACKENDS.
"""
from __future__ import annotations

from typing import Callable, Protocol

import numpy as np
import torch

Runner = Callable[[np.ndarray, list], tuple]   # (x (B, T), states) -> (logits, features, states)


class Backend(Protocol):
    name: str

    def unavailable(self) -> str | None: ...

    def unsupported(self, module: torch.nn.Module) -> str | None: ...

    def runner(self, module: torch.nn.Module, batch: int, workdir: str) -> Runner: ...


class TorchBackend:
    """The torch stepwise module itself, in its own dtype (float32 as converted), CPU."""
    name = "torch"

    def unavailable(self) -> str | None:
        return None

    def unsupported(self, module: torch.nn.Module) -> str | None:
        return None

    def runner(self, module: torch.nn.Module, batch: int, workdir: str) -> Runner:
        @torch.no_grad()
        def run(x: np.ndarray, states: list) -> tuple:
            out = module(torch.from_numpy(x), *(torch.from_numpy(s) for s in states))
            logits, feats, *new = (t.numpy() for t in out)
            return logits, feats, new
        return run


BACKENDS: dict[str, Backend] = {"torch": TorchBackend()}


def register(backend: Backend) -> None:
    BACKENDS[backend.name] = backend


class OnnxBackend:
    """The module exported to ONNX (dynamic batch) and run by ONNX Runtime on the CPU, one thread."""
    name = "onnx"

    def unavailable(self) -> str | None:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as e:
            return f"{e.name} is not installed (pip install 'liquid-edge[onnx]')"
        return None

    def unsupported(self, module: torch.nn.Module) -> str | None:
        return None

    def runner(self, module: torch.nn.Module, batch: int, workdir: str) -> Runner:
        import copy
        from pathlib import Path
        from .pipeline import open_exported
        from .window import graph_form   # FFT has no ONNX/TensorRT form
        return _session_runner(open_exported(copy.deepcopy(graph_form(module)), Path(workdir) / "step.onnx"))


class TensorRTBackend:
    """The module exported to ONNX, built into a TensorRT engine here, run through cuda-python."""
    name = "trt"

    def unavailable(self) -> str | None:
        from .tensorrt import TensorRTUnavailable, gpu_info, load_tensorrt
        try:
            load_tensorrt()
            gpu_info()
            from cuda.bindings import runtime  # noqa: F401
        except TensorRTUnavailable as e:
            return str(e)
        except ImportError:
            return "cuda-python is not installed"
        return None

    def unsupported(self, module: torch.nn.Module) -> str | None:
        return None

    def runner(self, module: torch.nn.Module, batch: int, workdir: str) -> Runner:
        import copy
        from pathlib import Path
        from ..runtime.trt_session import TrtStream
        from .onnx_graph import export_onnx
        from .tensorrt import build_engine
        onnx_path, engine = Path(workdir) / "step.onnx", Path(workdir) / "step.engine"
        man = export_onnx(copy.deepcopy(module), onnx_path, batch=batch)
        build_engine(onnx_path, engine, man, "fp32", opt_batch=batch, max_batch=batch)
        return _session_runner(TrtStream(engine))


class NativeBackend:
    """The stepwise module's constants in the fused C kernel (runtime/native.c), compiled here; CPU."""
    name = "native"

    def unavailable(self) -> str | None:
        from ..runtime.native import kernel_library
        from ..runtime.session import ModelError
        try:
            kernel_library()
        except ModelError as e:
            return str(e)
        return None

    def unsupported(self, module: torch.nn.Module) -> str | None:
        from .native import unsupported_reason
        return unsupported_reason(module)

    def runner(self, module: torch.nn.Module, batch: int, workdir: str) -> Runner:
        from pathlib import Path
        from .pipeline import open_exported
        return _session_runner(open_exported(module, Path(workdir) / "step.npz"))


def _session_runner(sess) -> Runner:
    def run(x: np.ndarray, states: list) -> tuple:
        return sess.step(x.astype(np.float32), [np.asarray(s, np.float32) for s in states])
    return run


register(OnnxBackend())
register(NativeBackend())
register(TensorRTBackend())
