"""Tensor Memory Accelerator (TMA) maps and launching kernels that take one by value.

A kernel reads a 2-D tile of a global tensor with `cp.async.bulk.tensor` through a tensor map
(`CUtensorMap`, 128 opaque bytes encoded by the driver: base address, shape, strides, box, swizzle).
The kernel takes it as a `const __grid_constant__` parameter, which CuPy's launcher cannot pass, so
`launch_by_value` builds the driver's kernel-parameter array itself (cuLaunchKernel, cuda-bindings).
"""

from __future__ import annotations

import ctypes

import torch

from .launch import _CTYPES, _dim3, _ensure_smem, _Ptr, pack_arg


class TensorMap:
    """An encoded CUtensorMap (128 bytes), passed to kernels by value."""

    __slots__ = ("raw", "box")

    def __init__(self, raw: bytes, box: tuple[int, int]):
        self.raw = raw
        self.box = box


_DTYPES = {torch.bfloat16: "CU_TENSOR_MAP_DATA_TYPE_BFLOAT16", torch.float16: "CU_TENSOR_MAP_DATA_TYPE_FLOAT16",
           torch.uint8: "CU_TENSOR_MAP_DATA_TYPE_UINT8", torch.float32: "CU_TENSOR_MAP_DATA_TYPE_FLOAT32"}
_SWIZZLE = {0: "CU_TENSOR_MAP_SWIZZLE_NONE", 32: "CU_TENSOR_MAP_SWIZZLE_32B", 64: "CU_TENSOR_MAP_SWIZZLE_64B",
            128: "CU_TENSOR_MAP_SWIZZLE_128B"}
_MAP_CACHE: dict[tuple, TensorMap] = {}


def tensor_map_2d(t: torch.Tensor, box_rows: int, box_cols: int, swizzle: int = 128) -> TensorMap:
    """Tensor map of a row-major 2-D CUDA tensor read in boxes of [box_rows, box_cols] elements.

    Rows past the end of the tensor read as zeros (the copy engine fills them). With swizzle=128 a box
    row must be exactly 128 bytes (the layout wgmma's 128-byte-swizzle descriptors expect).
    Cached by (pointer, shape, strides, box, swizzle): encoding costs ~10 us of host time.
    """
    from cuda.bindings import driver as cu

    if t.dim() != 2 or t.stride(1) != 1:
        raise ValueError(f"tensor_map_2d: expected a 2-D tensor with unit column stride, got shape "
                         f"{list(t.shape)} strides {list(t.stride())}")
    if t.dtype not in _DTYPES:
        raise ValueError(f"tensor_map_2d: dtype {t.dtype} is not supported (expected one of {list(_DTYPES)})")
    es = t.element_size()
    if swizzle and box_cols * es != swizzle:
        raise ValueError(f"tensor_map_2d: with {swizzle}-byte swizzle a box row must be {swizzle} bytes, got "
                         f"{box_cols} x {es}")
    key = (t.data_ptr(), tuple(t.shape), t.stride(0), t.dtype, box_rows, box_cols, swizzle)
    hit = _MAP_CACHE.get(key)
    if hit is not None:
        return hit
    err, tmap = cu.cuTensorMapEncodeTiled(
        getattr(cu.CUtensorMapDataType, _DTYPES[t.dtype]), 2, t.data_ptr(),
        [cu.cuuint64_t(t.shape[1]), cu.cuuint64_t(t.shape[0])], [cu.cuuint64_t(t.stride(0) * es)],
        [cu.cuuint32_t(box_cols), cu.cuuint32_t(box_rows)], [cu.cuuint32_t(1), cu.cuuint32_t(1)],
        cu.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE, getattr(cu.CUtensorMapSwizzle, _SWIZZLE[swizzle]),
        cu.CUtensorMapL2promotion.CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
        cu.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE)
    if err != cu.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"cuTensorMapEncodeTiled(shape {list(t.shape)}, box [{box_rows}, {box_cols}], "
                           f"swizzle {swizzle}) failed: {err.name}")
    raw = ctypes.string_at(tmap.getPtr(), 128)
    if len(_MAP_CACHE) >= 256:
        _MAP_CACHE.clear()
    m = _MAP_CACHE[key] = TensorMap(raw, (box_rows, box_cols))
    return m


_PDL_CONFIGS: dict[tuple, tuple] = {}


def _launch_config(grid, block, shared_mem: int, stream_ptr: int, enable_pdl: bool, cluster: int):
    """A CUlaunchConfig with the PDL and / or cluster-dimension attributes."""
    from cuda.bindings import driver as cu

    cfg = cu.CUlaunchConfig()
    cfg.gridDimX, cfg.gridDimY, cfg.gridDimZ = grid
    cfg.blockDimX, cfg.blockDimY, cfg.blockDimZ = block
    cfg.sharedMemBytes = shared_mem
    cfg.hStream = cu.CUstream(stream_ptr)
    attrs = []
    if enable_pdl:
        a = cu.CUlaunchAttribute()
        a.id = cu.CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
        a.value.programmaticStreamSerializationAllowed = 1
        attrs.append(a)
    if cluster:
        a = cu.CUlaunchAttribute()
        a.id = cu.CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION
        a.value.clusterDim.x, a.value.clusterDim.y, a.value.clusterDim.z = cluster, 1, 1
        attrs.append(a)
    cfg.attrs = attrs
    cfg.numAttrs = len(attrs)
    return cfg


_MAX_CLUSTERS: dict = {}


def max_active_clusters(func, cluster: int, block, shared_mem: int) -> int:
    """How many clusters of `cluster` CTAs (block threads, shared_mem bytes each) the device runs at once
    (cuOccupancyMaxActiveClusters): a grid of more clusters than this runs in waves."""
    from cuda.bindings import driver as cu

    key = (func.ptr, cluster, _dim3(block), shared_mem)
    if key not in _MAX_CLUSTERS:
        _ensure_smem(func, shared_mem)
        cfg = _launch_config((cluster, 1, 1), _dim3(block), shared_mem, torch.cuda.current_stream().cuda_stream,
                             False, cluster)
        err, n = cu.cuOccupancyMaxActiveClusters(cu.CUfunction(func.ptr), cfg)
        if err != cu.CUresult.CUDA_SUCCESS:
            raise RuntimeError(f"cuOccupancyMaxActiveClusters failed: {err.name}")
        _MAX_CLUSTERS[key] = int(n)
    return _MAX_CLUSTERS[key]


def launch_by_value(func, grid, block, args, *, shared_mem: int = 0, stream=None, enable_pdl: bool = False,
                    cluster: int = 0) -> None:
    """Launch `func` with `args` that may include TensorMap objects (passed by value, 128 bytes);
    other arguments as in runtime.launch (tensors -> pointers, int -> int32, float -> float32).
    enable_pdl: launch with programmatic stream serialization (the kernel may start before the previous
    kernel on the stream ends; it must pdl_wait before reading that kernel's output).
    cluster: > 0 launches clusters of that many consecutive CTAs along x (kernels/common/wb_cluster.cuh)."""
    from cuda.bindings import driver as cu

    grid, block = _dim3(grid), _dim3(block)
    storage = []
    for i, a in enumerate(args):
        if isinstance(a, TensorMap):
            storage.append((ctypes.c_ubyte * 128).from_buffer_copy(a.raw))
            continue
        p = pack_arg(a, i)
        if isinstance(p, _Ptr):
            storage.append(ctypes.c_uint64(p.value))
        else:
            storage.append(_CTYPES[p.dtype](p.item()))
    params = (ctypes.c_void_p * len(storage))(*[ctypes.addressof(s) for s in storage])
    stream_ptr = torch.cuda.current_stream().cuda_stream if stream is None else (
        stream if isinstance(stream, int) else stream.cuda_stream)
    _ensure_smem(func, shared_mem)
    if enable_pdl or cluster:
        key = (func.ptr, grid, block, shared_mem, stream_ptr, enable_pdl, cluster)
        hit = _PDL_CONFIGS.get(key)
        if hit is None:
            cfg = _launch_config(grid, block, shared_mem, stream_ptr, enable_pdl, cluster)
            if len(_PDL_CONFIGS) >= 1024:
                _PDL_CONFIGS.clear()
            hit = _PDL_CONFIGS[key] = (cfg, cu.CUfunction(func.ptr), cfg.attrs)
        (err,) = cu.cuLaunchKernelEx(hit[0], hit[1], ctypes.addressof(params), 0)
        if err != cu.CUresult.CUDA_SUCCESS:
            raise RuntimeError(f"cuLaunchKernelEx failed: {err.name}")
        return
    (err,) = cu.cuLaunchKernel(cu.CUfunction(func.ptr), *grid, *block, shared_mem, cu.CUstream(stream_ptr),
                               ctypes.addressof(params), 0)
    if err != cu.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"cuLaunchKernel failed: {err.name}")
