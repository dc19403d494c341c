"""Launch compiled kernels on torch's current stream, with or without programmatic dependent launch.

- Ordinary launches go through CuPy's function object (a Cython path, a few microseconds of host time).
- `enable_pdl=True` launches through `cuLaunchKernelEx` (cuda-bindings) with the attribute
  CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION, which CuPy cannot set. The kernel then may
  start while its predecessor on the stream is still running; it must execute `griddepcontrol.wait`
  (kernels/common/wb_pdl.cuh) before reading anything the predecessor writes.

Arguments: torch tensors and CuPy arrays pass their device pointer; Python ints become int32 and
floats float32 (pass numpy scalars such as np.int64 for other widths).
"""

from __future__ import annotations

import ctypes
from functools import lru_cache

import numpy as np
import torch

_CTYPES = {
    np.dtype(np.int8): ctypes.c_int8, np.dtype(np.uint8): ctypes.c_uint8,
    np.dtype(np.int16): ctypes.c_int16, np.dtype(np.uint16): ctypes.c_uint16,
    np.dtype(np.int32): ctypes.c_int32, np.dtype(np.uint32): ctypes.c_uint32,
    np.dtype(np.int64): ctypes.c_int64, np.dtype(np.uint64): ctypes.c_uint64,
    np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double,
}


class _Ptr:
    """A device pointer argument (8 bytes)."""

    __slots__ = ("value",)

    def __init__(self, value: int):
        self.value = value


def pack_arg(a, index: int = 0):
    """Turn one kernel argument into a numpy scalar (or a pointer marker)."""
    if isinstance(a, torch.Tensor):
        if a.device.type != "cuda":
            raise TypeError(f"kernel argument {index}: expected a CUDA tensor, got one on {a.device}")
        return _Ptr(a.data_ptr())
    if hasattr(a, "data") and hasattr(a.data, "ptr"):  # cupy.ndarray
        return _Ptr(a.data.ptr)
    if isinstance(a, _Ptr):
        return a
    if isinstance(a, bool):
        return np.int32(a)
    if isinstance(a, int):
        if not -(2**31) <= a < 2**31:
            raise OverflowError(f"kernel argument {index}: {a} does not fit int32; pass np.int64/np.uint64")
        return np.int32(a)
    if isinstance(a, float):
        return np.float32(a)
    if isinstance(a, np.generic):
        return a
    raise TypeError(f"kernel argument {index}: unsupported type {type(a).__name__}")


def device_supports_pdl(device: torch.device | int | None = None) -> bool:
    """Programmatic dependent launch needs compute capability >= 9.0 (Hopper)."""
    return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 9


class _StreamHandle:
    """Minimal CUDA stream protocol object (version 0, raw handle) for CuPy's Stream.from_external."""

    def __init__(self, ptr: int):
        self.ptr = ptr

    def __cuda_stream__(self):
        return (0, self.ptr)


@lru_cache(maxsize=64)
def _external_stream(ptr: int):
    import cupy

    from_external = getattr(cupy.cuda.Stream, "from_external", None)
    if from_external is not None:
        return from_external(_StreamHandle(ptr))
    return cupy.cuda.ExternalStream(ptr)


_SMEM_SET: dict[int, int] = {}


def _ensure_smem(func, shared_mem: int):
    """Raise the kernel's dynamic shared-memory limit when it asks for more than 48 KB."""
    if shared_mem <= 48 * 1024 or _SMEM_SET.get(func.ptr, 0) >= shared_mem:
        return
    from cuda.bindings import driver as cu

    attr = cu.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
    (err,) = cu.cuFuncSetAttribute(cu.CUfunction(func.ptr), attr, shared_mem)
    if err != cu.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"cuFuncSetAttribute(max dynamic smem = {shared_mem}) failed: {err.name}")
    _SMEM_SET[func.ptr] = shared_mem


def _dim3(x) -> tuple[int, int, int]:
    t = (x,) if isinstance(x, int) else tuple(x)
    if not 1 <= len(t) <= 3 or any(int(v) < 1 for v in t):
        raise ValueError(f"grid/block: expected 1-3 positive ints, got {x!r}")
    return tuple(int(v) for v in t) + (1,) * (3 - len(t))


def launch(func, grid, block, args, *, shared_mem: int = 0, stream=None, enable_pdl: bool | None = False):
    """Launch `func` (from `runtime.get_kernel`) on `stream` (default: torch's current stream).

    enable_pdl: True sets programmatic stream serialization; None means "if the device supports it"
    (the flashinfer convention); False is an ordinary launch.
    """
    grid, block = _dim3(grid), _dim3(block)
    packed = [pack_arg(a, i) for i, a in enumerate(args)]
    if stream is None:
        stream_ptr = torch.cuda.current_stream().cuda_stream
    elif isinstance(stream, int):
        stream_ptr = stream
    else:
        stream_ptr = getattr(stream, "cuda_stream", None) or stream.ptr
    _ensure_smem(func, shared_mem)
    if enable_pdl is None:
        enable_pdl = device_supports_pdl()
    if not enable_pdl:
        cargs = tuple(np.uint64(a.value) if isinstance(a, _Ptr) else a for a in packed)
        func(grid, block, cargs, shared_mem=shared_mem, stream=_external_stream(stream_ptr))
        return
    _launch_ex(func, grid, block, packed, shared_mem, stream_ptr)


# (func ptr, grid, block, shared_mem, stream) -> (CUlaunchConfig, CUfunction, attribute): building these
# cuda-bindings objects costs several microseconds of host time per launch, more than a small kernel runs,
# and with PDL the host must stay ahead of the GPU for the overlap to show.
_EX_CACHE: dict[tuple, tuple] = {}


def _launch_ex(func, grid, block, packed, shared_mem, stream_ptr):
    from cuda.bindings import driver as cu

    key = (func.ptr, grid, block, shared_mem, stream_ptr)
    hit = _EX_CACHE.get(key)
    if hit is None:
        cfg = cu.CUlaunchConfig()
        cfg.gridDimX, cfg.gridDimY, cfg.gridDimZ = grid
        cfg.blockDimX, cfg.blockDimY, cfg.blockDimZ = block
        cfg.sharedMemBytes = shared_mem
        cfg.hStream = cu.CUstream(stream_ptr)
        attr = cu.CUlaunchAttribute()
        attr.id = cu.CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
        attr.value.programmaticStreamSerializationAllowed = 1
        cfg.attrs = [attr]
        cfg.numAttrs = 1
        if len(_EX_CACHE) >= 4096:  # bound the cache (e.g. many short-lived streams)
            _EX_CACHE.clear()
        hit = _EX_CACHE[key] = (cfg, cu.CUfunction(func.ptr), attr)
    values = tuple(a.value if isinstance(a, _Ptr) else a.item() for a in packed)
    types = tuple(ctypes.c_void_p if isinstance(a, _Ptr) else _CTYPES[a.dtype] for a in packed)
    (err,) = cu.cuLaunchKernelEx(hit[0], hit[1], (values, types), 0)
    if err != cu.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"cuLaunchKernelEx failed: {err.name}")


def to_cupy(t: torch.Tensor):
    """Zero-copy view of a torch tensor as a CuPy array (DLPack)."""
    import cupy

    return cupy.from_dlpack(t)


def to_torch(a) -> torch.Tensor:
    """Zero-copy view of a CuPy array as a torch tensor (DLPack)."""
    return torch.from_dlpack(a)


def cupy_on_torch_stream():
    """Context manager: CuPy work inside runs on torch's current stream (ordering, graphs, timing)."""
    return _external_stream(torch.cuda.current_stream().cuda_stream)
