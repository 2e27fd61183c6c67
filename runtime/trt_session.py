"""A streaming session on a TensorRT engine: numpy in and out through cuda-python. No torch.

Written against the TensorRT 10 Python API (named I/O tensors, execute_async_v3). TensorRT cannot be
installed on our CI machines: this path runs where TensorRT and a GPU exist, and its test is skipped
elsewhere with the reason.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .session import ManifestSession, ModelError, load_manifest


class TrtStream(ManifestSession):
    backend = "tensorrt"

    def __init__(self, engine_path: str | Path):
        try:
            import tensorrt as trt
            from cuda.bindings import runtime as cudart
        except (ImportError, OSError) as e:
            raise ModelError(f"TensorRT runtime unavailable ({str(e).splitlines()[0]}): needs tensorrt and cuda-python") from None
        path = Path(engine_path)
        if not path.is_file():
            raise ModelError(f"{path}: no such file")
        self.manifest = load_manifest(path)
        self.trt, self.cudart = trt, cudart
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise ModelError(f"{path}: TensorRT could not load the engine (built for another GPU or TensorRT version?)")
        self.context = self.engine.create_execution_context()
        self.stream = self._check(cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}

    def _check(self, ret):
        err, *val = ret if isinstance(ret, tuple) else (ret,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA error {err}")
        return val[0] if len(val) == 1 else val

    def _device(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self._check(self.cudart.cudaFree(ptr))
            ptr = self._check(self.cudart.cudaMalloc(nbytes))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def step(self, samples: np.ndarray, states: list[np.ndarray]):
        cud = self.cudart
        h2d, d2h = cud.cudaMemcpyKind.cudaMemcpyHostToDevice, cud.cudaMemcpyKind.cudaMemcpyDeviceToHost
        inputs = {"samples": np.ascontiguousarray(samples, np.float32)}
        inputs.update({s["input"]: np.ascontiguousarray(x, np.float32) for s, x in zip(self.manifest["states"], states)})
        for name, arr in inputs.items():
            self.context.set_input_shape(name, arr.shape)
            ptr = self._device(name, arr.nbytes)
            self._check(cud.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes, h2d, self.stream))
            self.context.set_tensor_address(name, ptr)
        names = ["logits", "features"] + [s["output"] for s in self.manifest["states"]]
        outs = {n: np.empty(tuple(self.context.get_tensor_shape(n)), np.float32) for n in names}
        for n, arr in outs.items():
            self.context.set_tensor_address(n, self._device(n, arr.nbytes))
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execution failed")
        for n, arr in outs.items():
            self._check(cud.cudaMemcpyAsync(arr.ctypes.data, self._buffers[n][0], arr.nbytes, d2h, self.stream))
        self._check(cud.cudaStreamSynchronize(self.stream))
        return outs["logits"], outs["features"], [outs[s["output"]] for s in self.manifest["states"]]
