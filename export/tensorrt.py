"""ONNX step graph -> TensorRT engine, with the TensorRT Python API; or the trtexec command for it.

Engines are tied to a GPU and a TensorRT version: build on the target (e.g. the Jetson). Everything
that decides the build (options, profile shapes, the trtexec command, the sidecar) is computed by
plain functions, so it is testable without TensorRT; only `build_engine` touches the library.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..checkpoint import atomic_write

EXIT_NO_TENSORRT = 3


class TensorRTUnavailable(RuntimeError):
    """TensorRT or a GPU is missing; the message is one line."""


@dataclass
class BuildOptions:
    precision: str                 # fp32 | fp16
    strongly_typed: bool           # precision from the graph's types (TensorRT >= 9)
    fp16_flag: bool                # older TensorRT: BuilderFlag.FP16
    profile: dict                  # input name -> {"min": [...], "opt": [...], "max": [...]}
    workspace_mb: int = 1024
    timing_cache: str | None = None


def parse_version(v: str) -> tuple[int, int]:
    parts = (v.split(".") + ["0", "0"])[:2]
    return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)


def build_options(trt_version: str, precision: str, manifest: dict, opt_batch: int = 1, max_batch: int = 16,
                  timing_cache: str | None = None) -> BuildOptions:
    """What to ask TensorRT for. Strongly typed networks where the version has them (9.0+; 11 removed
    the FP16 builder flag), the FP16 flag on older versions; one explicit optimisation profile."""
    major, _ = parse_version(trt_version)
    strongly = major >= 9
    fixed = manifest["batch"] if isinstance(manifest["batch"], int) else None
    lo, opt, hi = (fixed, fixed, fixed) if fixed else (1, min(opt_batch, max_batch), max_batch)
    profile = {}
    for spec in manifest["inputs"]:
        rest = [int(d) for d in spec["shape"][1:]]
        profile[spec["name"]] = {"min": [lo, *rest], "opt": [opt, *rest], "max": [hi, *rest]}
    return BuildOptions(precision, strongly, precision == "fp16" and not strongly, profile, timing_cache=timing_cache)


def _shapes(profile: dict, which: str) -> str:
    return ",".join(f"{name}:{'x'.join(map(str, p[which]))}" for name, p in profile.items())


def trtexec_command(onnx_path: str | Path, engine_path: str | Path, opts: BuildOptions) -> str:
    """The trtexec command that builds the same engine on the target."""
    cmd = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]
    if opts.strongly_typed:
        cmd.append("--stronglyTyped")
    elif opts.fp16_flag:
        cmd.append("--fp16")
    cmd += [f"--minShapes={_shapes(opts.profile, 'min')}", f"--optShapes={_shapes(opts.profile, 'opt')}",
            f"--maxShapes={_shapes(opts.profile, 'max')}", f"--memPoolSize=workspace:{opts.workspace_mb}M"]
    if opts.timing_cache:
        cmd.append(f"--timingCacheFile={opts.timing_cache}")
    return " ".join(cmd)


def load_tensorrt():
    """The tensorrt module, or TensorRTUnavailable saying why."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise TensorRTUnavailable(f"TensorRT is not installed ({e.msg if hasattr(e, 'msg') else e})") from None
    except OSError as e:   # the PyPI bindings without the libraries: libnvonnxparser.so missing
        raise TensorRTUnavailable(f"TensorRT libraries are missing ({str(e).splitlines()[0]})") from None
    return trt


def gpu_info() -> dict:
    """Name and compute capability of GPU 0 (through torch where it has CUDA), or TensorRTUnavailable."""
    try:
        import torch
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            return {"name": p.name, "compute_capability": f"{p.major}.{p.minor}"}
    except ImportError:
        pass
    raise TensorRTUnavailable("no CUDA GPU found")


def sidecar(manifest: dict, opts: BuildOptions, trt_version: str, gpu: dict) -> dict:
    return dict(manifest, tensorrt={"version": trt_version, "gpu": gpu, "precision": opts.precision,
                                    "build_options": asdict(opts)})


def build_engine(onnx_path: str | Path, engine_path: str | Path, manifest: dict, precision: str,
                 opt_batch: int = 1, max_batch: int = 16, timing_cache: str | Path | None = None) -> dict:
    """Build and write (atomically) the engine and its sidecar `<engine>.json`; returns the sidecar."""
    trt = load_tensorrt()
    gpu = gpu_info()
    opts = build_options(trt.__version__, precision, manifest, opt_batch, max_batch,
                         str(timing_cache) if timing_cache else None)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if opts.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):   # required before 10, deprecated after
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_mb << 20)
    if opts.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, p in opts.profile.items():
        profile.set_shape(name, p["min"], p["opt"], p["max"])
    config.add_optimization_profile(profile)
    cache_bytes = Path(timing_cache).read_bytes() if timing_cache and Path(timing_cache).is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError("TensorRT failed to build the engine (see the log above)")
    atomic_write(engine_path, lambda tmp: Path(tmp).write_bytes(bytes(blob)))
    if timing_cache:
        atomic_write(timing_cache, lambda tmp: Path(tmp).write_bytes(bytes(config.get_timing_cache().serialize())))
    side = sidecar(manifest, opts, trt.__version__, gpu)
    atomic_write(str(engine_path) + ".json", lambda tmp: Path(tmp).write_text(json.dumps(side, indent=1)))
    return side


def default_timing_cache() -> Path:
    return Path(os.environ.get("LIQUID_EDGE_CACHE", Path.home() / ".cache" / "liquid-edge")) / "tensorrt.timing.cache"
