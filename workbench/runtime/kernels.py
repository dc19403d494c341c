"""Compile `kernels/*.cu` with NVRTC and load them into CuPy.

One compile path serves both machines:
- `compile_kernel(name, arch="sm_90a")` runs NVRTC through cuda-bindings and needs no GPU; it returns
  the cubin, the lowered names of template instantiations and the per-kernel resource report
  (registers, spills, shared memory) parsed from ptxas. CI uses it as the sm_90a compile gate.
- `get_kernel(name, func)` compiles for the current device (sm_90a on Hopper, so wgmma and setmaxnreg
  are available) and loads the cubin into CuPy, on the same primary context torch uses.

The cache key is a sha256 over the file and every header it includes (CuPy's own cache would ignore
header contents), the options and the NVRTC version. Kernels include only `kernels/common/*.cuh`
(no toolkit headers), so NVRTC needs no CUDA include directory on either machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
KERNEL_DIR = REPO_ROOT / "kernels"
COMMON_DIR = KERNEL_DIR / "common"
CACHE_DIR = Path(os.environ.get("WORKBENCH_CACHE", Path.home() / ".cache" / "workbench")) / "cubin"
BASE_OPTIONS = ("-std=c++17", "-lineinfo", "--ptxas-options=-v")
_INCLUDE_RE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.MULTILINE)


class KernelCompileError(RuntimeError):
    """NVRTC rejected a kernel file; the message carries the compiler log."""


@dataclass
class KernelResources:
    """ptxas report for one entry function."""

    name: str  # lowered (mangled) name
    registers: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    stack_frame: int = 0
    smem_bytes: int = 0
    barriers: int = 0

    @property
    def spills(self) -> bool:
        return self.spill_stores > 0 or self.spill_loads > 0


@dataclass
class CompiledKernel:
    """Result of one NVRTC compilation of a kernel file."""

    name: str
    arch: str
    cubin: bytes
    lowered: dict[str, str]  # name expression -> lowered name
    log: str
    source_hash: str
    resources: dict[str, KernelResources] = field(default_factory=dict)

    def resources_for(self, expr: str) -> KernelResources:
        """Resources of an entry point, by its C++ name (`extern "C"` name or template expression)."""
        return self.resources[self.lowered.get(expr, expr)]


def kernel_path(name: str) -> Path:
    """`copy` -> kernels/copy.cu (a path is accepted too)."""
    p = Path(name)
    if p.suffix != ".cu":
        p = KERNEL_DIR / f"{name}.cu"
    if not p.is_absolute():
        p = REPO_ROOT / p
    if not p.exists():
        known = sorted(q.stem for q in KERNEL_DIR.glob("*.cu"))
        raise FileNotFoundError(f"kernel: no file {p}; known kernels: {known}")
    return p


def _resolve_include(inc: str, including: Path) -> Path:
    for base in (including.parent, COMMON_DIR, KERNEL_DIR):
        cand = base / inc
        if cand.exists():
            return cand.resolve()
    raise KernelCompileError(f"{including.name}: cannot find included header \"{inc}\" "
                             f"(searched {including.parent}, {COMMON_DIR})")


def source_files(name: str) -> list[Path]:
    """The kernel file and every header it includes, transitively (quoted includes only)."""
    root = kernel_path(name).resolve()
    seen: list[Path] = []
    stack = [root]
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.append(p)
        for inc in _INCLUDE_RE.findall(p.read_text()):
            stack.append(_resolve_include(inc, p))
    return seen


def hash_files(paths) -> str:
    """sha256 over (relative path, contents) of each file, in sorted order."""
    h = hashlib.sha256()
    for p in sorted(Path(q).resolve() for q in paths):
        rel = p.relative_to(REPO_ROOT) if p.is_relative_to(REPO_ROOT) else p
        h.update(str(rel).encode())
        h.update(b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def kernel_hash(name: str) -> str:
    return hash_files(source_files(name))


def list_kernels() -> list[str]:
    return sorted(p.stem for p in KERNEL_DIR.glob("*.cu"))


def name_expressions(name: str) -> tuple[str, ...]:
    """Template instantiations a file asks to have compiled, from lines `// @instantiate expr`."""
    text = kernel_path(name).read_text()
    return tuple(m.strip() for m in re.findall(r"//\s*@instantiate\s+(.+)", text))


def nvrtc_version() -> str:
    from cuda.bindings import nvrtc

    _, major, minor = nvrtc.nvrtcVersion()
    return f"{major}.{minor}"


_RES_FUNC = re.compile(r"Compiling entry function '([^']+)' for '([^']+)'")
_RES_PROPS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_RES_USED = re.compile(r"Used (\d+) registers(?:, used (\d+) barriers)?(?:, (\d+) bytes smem)?")


def parse_ptxas_log(log: str) -> dict[str, KernelResources]:
    """Parse NVRTC's `--ptxas-options=-v` output into one record per entry function."""
    out: dict[str, KernelResources] = {}
    cur: KernelResources | None = None
    for line in log.splitlines():
        m = _RES_FUNC.search(line)
        if m:
            cur = KernelResources(name=m.group(1))
            out[cur.name] = cur
            continue
        if cur is None:
            continue
        m = _RES_PROPS.search(line)
        if m:
            cur.stack_frame, cur.spill_stores, cur.spill_loads = (int(g) for g in m.groups())
            continue
        m = _RES_USED.search(line)
        if m:
            cur.registers = int(m.group(1))
            cur.barriers = int(m.group(2) or 0)
            cur.smem_bytes = int(m.group(3) or 0)
    return out


def _nvrtc_check(result, prog, what: str, src_name: str):
    from cuda.bindings import nvrtc

    err = result[0] if isinstance(result, tuple) else result
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        log = _nvrtc_log(prog) if prog is not None else ""
        raise KernelCompileError(f"{src_name}: {what} failed ({err.name})\n{log}")


def _nvrtc_log(prog) -> str:
    from cuda.bindings import nvrtc

    _, n = nvrtc.nvrtcGetProgramLogSize(prog)
    buf = b" " * n
    nvrtc.nvrtcGetProgramLog(prog, buf)
    return buf.decode(errors="replace").rstrip("\x00 \n")


def compile_kernel(name: str, arch: str = "sm_90a", defines: tuple[str, ...] = (),
                   exprs: tuple[str, ...] | None = None, use_cache: bool = True) -> CompiledKernel:
    """Compile kernels/<name>.cu to a cubin for `arch` with NVRTC (no GPU needed).

    `defines` are `NAME=VALUE` macros; `exprs` the template instantiations (default: the file's
    `// @instantiate` lines). Raises KernelCompileError with the compiler log on failure.
    """
    from cuda.bindings import nvrtc

    path = kernel_path(name)
    exprs = name_expressions(name) if exprs is None else tuple(exprs)
    options = (*BASE_OPTIONS, f"--gpu-architecture={arch}", f"-I{COMMON_DIR}",
               *(f"-D{d}" for d in defines))
    src_hash = kernel_hash(name)
    key = hashlib.sha256(json.dumps([src_hash, options, exprs, nvrtc_version()]).encode()).hexdigest()[:32]
    cache_bin, cache_meta = CACHE_DIR / f"{path.stem}-{key}.cubin", CACHE_DIR / f"{path.stem}-{key}.json"
    if use_cache and cache_bin.exists() and cache_meta.exists():
        meta = json.loads(cache_meta.read_text())
        return CompiledKernel(name=path.stem, arch=arch, cubin=cache_bin.read_bytes(), lowered=meta["lowered"],
                              log=meta["log"], source_hash=src_hash, resources=parse_ptxas_log(meta["log"]))

    err, prog = nvrtc.nvrtcCreateProgram(path.read_bytes(), path.name.encode(), 0, [], [])
    _nvrtc_check(err, None, "nvrtcCreateProgram", path.name)
    try:
        for e in exprs:
            _nvrtc_check(nvrtc.nvrtcAddNameExpression(prog, e.encode()), prog, f"name expression {e}", path.name)
        opts = [o.encode() for o in options]
        res = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        _nvrtc_check(res, prog, f"compilation for {arch}", path.name)
        log = _nvrtc_log(prog)
        _, size = nvrtc.nvrtcGetCUBINSize(prog)
        cubin = b" " * size
        _nvrtc_check(nvrtc.nvrtcGetCUBIN(prog, cubin), prog, "nvrtcGetCUBIN", path.name)
        lowered = {}
        for e in exprs:
            r, low = nvrtc.nvrtcGetLoweredName(prog, e.encode())
            _nvrtc_check(r, prog, f"lowered name of {e}", path.name)
            lowered[e] = low.decode()
    finally:
        nvrtc.nvrtcDestroyProgram(prog)
    if use_cache:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        cache_bin.write_bytes(cubin)
        cache_meta.write_text(json.dumps({"lowered": lowered, "log": log, "options": options}))
    return CompiledKernel(name=path.stem, arch=arch, cubin=cubin, lowered=lowered, log=log,
                          source_hash=src_hash, resources=parse_ptxas_log(log))


def device_arch(device_index: int | None = None) -> str:
    """NVRTC arch of the current CUDA device: sm_90a on Hopper (wgmma, setmaxnreg), else sm_XY."""
    import torch

    major, minor = torch.cuda.get_device_capability(device_index)
    return f"sm_{major}{minor}" + ("a" if (major, minor) == (9, 0) else "")


class LoadedModule:
    """A compiled kernel file loaded on the current device; `fn(expr)` returns a launchable function."""

    def __init__(self, compiled: CompiledKernel):
        import cupy

        self.compiled = compiled
        self._module = cupy.cuda.function.Module()
        self._module.load(compiled.cubin)
        self._funcs: dict[str, object] = {}

    def fn(self, expr: str):
        if expr not in self._funcs:
            lowered = self.compiled.lowered.get(expr, expr)
            try:
                self._funcs[expr] = self._module.get_function(lowered)
            except Exception as e:  # CuPy raises CUDADriverError(CUDA_ERROR_NOT_FOUND)
                raise KeyError(f"kernel {self.compiled.name}: no function {expr!r} "
                               f"(template instantiations need an `// @instantiate {expr}` line)") from e
        return self._funcs[expr]


@cache
def _load(name: str, arch: str, defines: tuple[str, ...], src_hash: str) -> LoadedModule:
    return LoadedModule(compile_kernel(name, arch=arch, defines=defines))


_LOADED: dict[tuple, tuple[tuple, LoadedModule]] = {}


def _mtimes(paths) -> tuple:
    return tuple(p.stat().st_mtime_ns for p in paths)


def load_module(name: str, defines: tuple[str, ...] = ()) -> LoadedModule:
    """Compile (cached) and load kernels/<name>.cu on the current CUDA device.

    Called on every launch by the technique wrappers, so the hot path is a dict lookup plus a stat of
    each source file: an edited file or header (new mtime) is re-hashed and recompiled in the same process.
    """
    import torch

    key = (name, tuple(defines), torch.cuda.current_device() if torch.cuda.is_available() else -1)
    hit = _LOADED.get(key)
    if hit is not None:
        paths_mtimes, mod = hit
        if _mtimes(paths_mtimes[0]) == paths_mtimes[1]:
            return mod
    if not torch.cuda.is_available():
        raise RuntimeError(f"kernel {name}: loading needs a CUDA device; use compile_kernel() for a "
                           "compile-only check")
    torch.cuda.init()
    paths = source_files(name)
    mtimes = _mtimes(paths)
    mod = _load(name, device_arch(), tuple(defines), kernel_hash(name))
    _LOADED[key] = ((paths, mtimes), mod)
    return mod


def get_kernel(name: str, func: str, defines: tuple[str, ...] = ()):
    """The CuPy function `func` (an `extern "C"` name or an instantiated template) of kernels/<name>.cu."""
    return load_module(name, defines).fn(func)
