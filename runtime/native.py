"""The native CPU backend: the stepwise model as one fused C kernel (native.c). numpy only, no torch.

An export for it is `NAME.npz` (the stepwise form's float32 constants, plain matrices, and a JSON
`meta` record) with the usual `NAME.json` manifest. The kernel is compiled here, on first use, with
the system C compiler (`CC`, else cc / gcc / clang; -O3 -march=native) into the liquid-edge cache
(`LIQUID_EDGE_CACHE`, default ~/.cache/liquid-edge), keyed by the source, the flags, the compiler and
the CPU, so a library built on one machine is never run on another (`LIQUID_EDGE_CFLAGS` replaces
-march=native, e.g. to build for a generic CPU).

One thread; B streams run one after another inside one call.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .session import ManifestSession, ModelError, load_manifest

SOURCE = Path(__file__).with_name("native.c")
FLAGS = ["-O3", "-std=gnu11", "-fPIC", "-shared", "-ffp-contract=fast", "-fno-math-errno"]
LIBS = ["-lm"]
NORMS = {"none": 0, "affine": 1, "layer": 2}
LIQUID = {None: 0, "polyb": 1, "kb": 2}
CONTRACT = {None: 0, "none": 0, "tanh": 1, "lecun": 2}
FORMAT = "liquid-edge-native/1"
VL, NMAX, PMAX, CMAX = 8, 64, 8, 4   # native.c: lanes, largest state, liquid degree, channels

_P = ctypes.POINTER(ctypes.c_float)


class _Layer(ctypes.Structure):
    _fields_ = [("norm", ctypes.c_int), ("eps", ctypes.c_float), ("na", _P), ("nb", _P),
                ("liquid", ctypes.c_int), ("degree", ctypes.c_int), ("contract", ctypes.c_int), ("lc", _P),
                ("dA", _P), ("B", _P), ("C", _P), ("D", _P), ("Wa", _P), ("Wb", _P), ("ba", _P), ("bb", _P)]


class _Model(ctypes.Structure):
    _fields_ = [("H", ctypes.c_int), ("n", ctypes.c_int), ("C", ctypes.c_int), ("L", ctypes.c_int),
                ("d_in", ctypes.c_int), ("prenorm", ctypes.c_int), ("We", _P), ("be", _P),
                ("fnorm", ctypes.c_int), ("feps", ctypes.c_float), ("fa", _P), ("fb", _P),
                ("layers", ctypes.POINTER(_Layer)), ("K", ctypes.c_int), ("pool", ctypes.c_int),
                ("nwin", ctypes.c_int), ("Wd", _P), ("bd", _P)]


def cache_dir() -> Path:
    return Path(os.environ.get("LIQUID_EDGE_CACHE", Path.home() / ".cache" / "liquid-edge"))


def _compiler() -> str:
    cc = os.environ.get("CC") or next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    if not cc or not shutil.which(cc.split()[0]):
        raise ModelError("the native backend needs a C compiler (set CC, or install gcc: apt-get install gcc)")
    return cc


def _cpu_id() -> str:
    try:   # the instruction-set flags: -march=native code must not move to another CPU
        return next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith(("flags", "Features")))
    except (OSError, StopIteration):
        return platform.processor()


_LOADED: dict[tuple, ctypes.CDLL] = {}


def kernel_library() -> ctypes.CDLL:
    """The compiled kernel, built once per source, compiler and CPU (and loaded once per process)."""
    cc = _compiler()
    key0 = (cc, cache_dir(), os.environ.get("LIQUID_EDGE_CFLAGS"))
    if key0 in _LOADED:
        return _LOADED[key0]
    try:
        version = subprocess.run(cc.split() + ["--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise ModelError(f"the C compiler {cc!r} does not run ({e})") from None
    src = SOURCE.read_bytes()
    # LIQUID_EDGE_CFLAGS replaces -march=native (e.g. "-march=armv8.2-a" or a generic "-march=x86-64");
    # some compilers / CPUs have no -march=native, hence the plain fallback
    arch = os.environ.get("LIQUID_EDGE_CFLAGS", "-march=native").split()
    attempts = [FLAGS + arch, FLAGS]
    for flags in attempts:
        key = hashlib.sha256(src + " ".join([cc, *flags, version, platform.machine(), _cpu_id()]).encode()).hexdigest()[:16]
        lib = cache_dir() / "native" / f"le-{key}.so"
        if not lib.is_file():
            lib.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".le-", suffix=".so", dir=lib.parent)
            os.close(fd)
            r = subprocess.run(cc.split() + flags + [str(SOURCE), "-o", tmp] + LIBS, capture_output=True, text=True)
            if r.returncode:
                os.unlink(tmp)
                err = (r.stderr.strip().splitlines() or ["no message"])[-1]
                continue
            os.replace(tmp, lib)
        so = ctypes.CDLL(str(lib))
        so.le_chunk.restype = ctypes.c_int
        so.le_chunk.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int] + [ctypes.c_void_p] * 7
        so.le_work_floats.restype = ctypes.c_size_t
        so.le_work_floats.argtypes = [ctypes.POINTER(_Model), ctypes.c_int]
        _LOADED[key0] = so
        return so
    raise ModelError(f"compiling the native kernel with {cc} failed: {err}")


def pack_panels(W: np.ndarray, width: int = 16) -> np.ndarray:
    """W (K, N), N a multiple of 8 -> the kernel's layout: panels of `width` columns (the last may have
    8), each K x width row-major, one after another."""
    K, N = W.shape
    return np.ascontiguousarray(np.concatenate([W[:, j:j + width].ravel() for j in range(0, N, width)]), np.float32)


def group_major(M: np.ndarray) -> np.ndarray:
    """(..., H) -> (H/8, ..., 8): each group of 8 channels' parameters contiguous, as the kernel reads them."""
    *lead, H = M.shape
    G = M.reshape(*lead, H // 8, 8)
    return np.ascontiguousarray(np.moveaxis(G, -2, 0), np.float32)


def expected_shapes(meta: dict) -> dict[str, tuple[int, ...]]:
    """Every array the kernel reads, with the shape meta implies (a weights file is untrusted input:
    nothing reaches the C code that does not match)."""
    H, n, C, K = meta["H"], meta["n"], meta["C"], meta["K"]
    want = {"enc_W": (meta["d_in"], H), "enc_b": (H,), "final_a": (H,), "final_b": (H,), "dec_W": (K, H), "dec_b": (K,)}
    for i, ly in enumerate(meta["layers"]):
        p = f"layer{i}."
        want.update({p + "norm_a": (H,), p + "norm_b": (H,), p + "dA": (n, n, H), p + "B": (n, H), p + "C": (C, n, H),
                     p + "D": (C, H), p + "Wo": (C * H, 2 * H), p + "bo": (2 * H,)})
        if ly["liquid"]:
            want[p + "lc"] = (ly["degree"] - 1, C, H) if ly["liquid"] == "polyb" else (ly["degree"] - 1, H)
    if meta["features"] == "logmel":
        bins = meta["win"] // 2 + 1
        want.update({"fe_cos": (meta["win"], bins), "fe_sin": (meta["win"], bins), "fe_mel": (bins, meta["d_in"])})
    return want


def _check(meta: dict, arrays: dict, manifest: dict) -> None:
    """ModelError (one line) unless meta, arrays and the manifest's states describe one model the kernel runs."""
    ints = ("H", "n", "C", "L", "d_in", "K", "steps", "window", "hop", "win")
    if any(not isinstance(meta.get(k), int) or meta[k] < 1 for k in ints) or len(meta.get("layers", [])) != meta["L"]:
        raise ModelError("meta record is incomplete or not positive integers")
    if meta["H"] % VL or meta["n"] > NMAX or meta["C"] > CMAX or meta["window"] % meta["steps"]:
        raise ModelError(f"a model the kernel cannot run (d_model {meta['H']}, states {meta['n']}, channels {meta['C']})")
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    for ly in [*meta["layers"], meta.get("final_norm", {})]:
        if not isinstance(ly, dict) or ly.get("norm") not in NORMS or not number(ly.get("eps")) \
                or ly.get("liquid") not in LIQUID or ly.get("contract") not in CONTRACT \
                or (ly.get("liquid") and not (isinstance(ly.get("degree"), int) and 2 <= ly["degree"] <= PMAX)):
            raise ModelError(f"unknown layer settings {ly}")
    if meta.get("pool") not in ("mean", "last") or meta.get("features") not in ("raw", "logmel") \
            or not isinstance(meta.get("prenorm"), bool):
        raise ModelError("meta record has unknown pool, features or prenorm settings")
    for name, shape in expected_shapes(meta).items():
        if name not in arrays or arrays[name].shape != shape:
            got = arrays[name].shape if name in arrays else "missing"
            raise ModelError(f"array {name} should be {shape}, is {got}")
    degrees = {ly["degree"] for ly in meta["layers"] if ly["liquid"]}
    states = {"ssm_state": [meta["L"], meta["H"], meta["n"]],
              "liquid_state": [meta["L"], next(iter(degrees), 2) - 1, meta["H"]] if degrees else None,
              "pool_state": [meta["window"] // meta["steps"], meta["K"] + 1] if meta.get("pool") == "mean" else None,
              "frontend_state": [meta["win"] - meta["hop"]] if meta["features"] == "logmel" else None}
    want = {k: v for k, v in states.items() if v is not None}
    got = {st["name"]: list(st["shape"][1:]) for st in manifest["states"]}
    chunk = meta["steps"] * (meta["hop"] if meta["features"] == "logmel" else 1)
    if got != want or len(degrees) > 1 or manifest["chunk"] != chunk:
        raise ModelError(f"manifest and weights disagree (states {got} vs {want}, chunk {manifest['chunk']} vs {chunk})")


def _ptr(a: np.ndarray | None):
    return a.ctypes.data_as(_P) if a is not None else None


class NativeStream(ManifestSession):
    """A streaming session on a native export (NAME.npz + NAME.json); the API of OnnxStream."""

    backend = "native"

    def __init__(self, path: str | Path, threads: int = 1):
        path = Path(path)
        if threads != 1:
            raise ModelError("the native kernel runs on one thread (--threads 1); run a process per core for more streams")
        if not path.is_file():
            raise ModelError(f"{path}: no such file")
        self.manifest = load_manifest(path)
        if self.manifest.get("format") != FORMAT:
            raise ModelError(f"{path}: not a native export (manifest format {self.manifest.get('format')!r})")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(str(arrays.pop("meta")))
            self.arrays = {k: np.ascontiguousarray(v, np.float32) for k, v in arrays.items()}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelError(f"{path}: not a native weights file ({(str(e).splitlines() or [type(e).__name__])[0][:120]})") from None
        try:
            _check(meta, self.arrays, self.manifest)
        except ModelError as e:
            raise ModelError(f"{path}: {e}") from None
        except (KeyError, TypeError, AttributeError) as e:
            raise ModelError(f"{path}: meta record is malformed ({type(e).__name__}: {e})") from None
        self.meta = meta
        self.lib = kernel_library()
        self._model = self._build()
        self._model_ptr = ctypes.addressof(self._model)
        self._K = meta["K"]
        self._state_shapes = [tuple(s["shape"][1:]) for s in self.manifest["states"]]
        self._state_names = [s["name"] for s in self.manifest["states"]]
        self._frame_idx = np.arange(meta["steps"])[:, None] * meta["hop"] + np.arange(meta["win"])
        self._work: dict[int, np.ndarray] = {}

    def _build(self) -> _Model:
        m, a = self.meta, self.arrays
        H, L = m["H"], m["L"]
        keep = []   # the packed copies must outlive the structures that point at them

        def arr(name):
            x = a[name]
            keep.append(x)
            return _ptr(x)

        def packed(name, pack=pack_panels):
            x = pack(a[name])
            keep.append(x)
            return _ptr(x)

        layers = (_Layer * L)()
        for i, ly in enumerate(m["layers"]):
            p = f"layer{i}."
            layers[i] = _Layer(NORMS[ly["norm"]], ly["eps"], arr(p + "norm_a"), arr(p + "norm_b"),
                               LIQUID[ly["liquid"]], ly["degree"], CONTRACT[ly["contract"]],
                               arr(p + "lc") if ly["liquid"] else None,
                               packed(p + "dA", group_major), packed(p + "B", group_major),
                               packed(p + "C", group_major), arr(p + "D"),
                               packed(p + "Wo", lambda W: pack_panels(W[:, :H], 8)), packed(p + "Wo", lambda W: pack_panels(W[:, H:], 8)),
                               packed(p + "bo", lambda b: np.ascontiguousarray(b[:H])), packed(p + "bo", lambda b: np.ascontiguousarray(b[H:])))
        fn = m["final_norm"]
        model = _Model(H, m["n"], m["C"], L, m["d_in"], int(m["prenorm"]), packed("enc_W"), arr("enc_b"),
                       NORMS[fn["norm"]], fn["eps"], arr("final_a"), arr("final_b"), layers,
                       m["K"], int(m["pool"] == "mean"), m["window"] // m["steps"],
                       arr("dec_W"), arr("dec_b"))
        self._keep = (keep, layers)
        return model

    def step(self, samples: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """samples (B, chunk) float32 -> logits (B, K), features (B, steps, D), new states (fresh arrays:
        the inputs are not modified)."""
        m, a = self.meta, self.arrays
        x = np.ascontiguousarray(samples, np.float32)
        if x.ndim != 2 or x.shape[1] != self.chunk:
            raise ModelError(f"samples must be (batch, {self.chunk}), not {x.shape}")
        new = [np.array(v, np.float32) for v in states]          # copies: the kernel updates them in place
        if len(new) != len(self._state_shapes) or any(v.shape != (x.shape[0], *want) for v, want in zip(new, self._state_shapes)):
            raise ModelError(f"states must be {[('batch', *w) for w in self._state_shapes]} for batch {x.shape[0]}, "
                             f"not {[v.shape for v in new]}")
        st = dict(zip(self._state_names, new))
        if m["features"] == "logmel":   # the causal front end: frames ending at hop boundaries
            xe = np.concatenate([st["frontend_state"], x], 1)
            st["frontend_state"][:] = xe[:, x.shape[1]:]
            f = xe[:, self._frame_idx]                                # (B, steps, win)
            re, im = f @ a["fe_cos"], f @ a["fe_sin"]
            x = np.log((re * re + im * im) @ a["fe_mel"] + np.float32(1e-6)).astype(np.float32)
        B, T = x.shape[0], m["steps"]
        x = np.ascontiguousarray(x, np.float32)
        feats = np.empty((B, T, m["H"]), np.float32)
        logits = np.empty((B, self._K), np.float32)
        work = self._work.get(T)
        if work is None:
            work = self._work[T] = np.empty(self.lib.le_work_floats(ctypes.byref(self._model), T), np.float32)
        liq, pool = st.get("liquid_state"), st.get("pool_state")
        rc = self.lib.le_chunk(self._model_ptr, B, T, x.ctypes.data, st["ssm_state"].ctypes.data,
                               None if liq is None else liq.ctypes.data, None if pool is None else pool.ctypes.data,
                               feats.ctypes.data, logits.ctypes.data, work.ctypes.data)
        if rc:
            raise ModelError("the native kernel refused this model (state size, degree or channels beyond its limits)")
        return logits, feats, new
