"""GPU plumbing: device choice, kernel compile/load/launch (PDL), torch<->CuPy interop, argument checks."""

from .checks import InputError, check_choice, check_multiple, check_tensor
from .device import device_info, has_cuda, resolve_device, software_info
from .kernels import (
    KernelCompileError,
    compile_kernel,
    device_arch,
    get_kernel,
    kernel_hash,
    list_kernels,
    load_module,
    source_files,
)
from .launch import cupy_on_torch_stream, device_supports_pdl, launch, to_cupy, to_torch

__all__ = [
    "InputError", "check_choice", "check_multiple", "check_tensor",
    "device_info", "has_cuda", "resolve_device", "software_info",
    "KernelCompileError", "compile_kernel", "device_arch", "get_kernel", "kernel_hash", "list_kernels",
    "load_module", "source_files",
    "cupy_on_torch_stream", "device_supports_pdl", "launch", "to_cupy", "to_torch",
]
