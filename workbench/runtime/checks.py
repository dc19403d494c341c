"""Argument checks with errors that name the argument, what was expected and what came."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class InputError(ValueError):
    """Bad input to a workbench op (wrong dtype, device, shape, alignment or layout)."""


def _shape_matches(got: Sequence[int], want: Sequence[int | None]) -> bool:
    return len(got) == len(want) and all(w is None or g == w for g, w in zip(got, want))


def check_tensor(
    name: str,
    t,
    *,
    dtype: torch.dtype | Sequence[torch.dtype] | None = None,
    device: str | None = None,
    shape: Sequence[int | None] | None = None,
    ndim: int | None = None,
    contiguous: bool = False,
    last_dim_contiguous: bool = False,
    align_bytes: int | None = None,
) -> torch.Tensor:
    """Validate one tensor argument; returns it unchanged.

    `device` is a device type ("cuda" or "cpu"); `shape` may hold None for a free dimension;
    `align_bytes` checks the data pointer (e.g. 16 for 16-byte vector loads).
    """
    if not isinstance(t, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if dtype is not None:
        allowed = (dtype,) if isinstance(dtype, torch.dtype) else tuple(dtype)
        if t.dtype not in allowed:
            want = " or ".join(str(d) for d in allowed)
            raise InputError(f"{name}: expected dtype {want}, got {t.dtype}")
    if device is not None and t.device.type != device:
        raise InputError(f"{name}: expected a {device} tensor, got one on {t.device}")
    if ndim is not None and t.dim() != ndim:
        raise InputError(f"{name}: expected {ndim} dimensions, got shape {tuple(t.shape)}")
    if shape is not None and not _shape_matches(tuple(t.shape), tuple(shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise InputError(f"{name}: expected shape {want}, got {list(t.shape)}")
    if contiguous and not t.is_contiguous():
        raise InputError(f"{name}: expected a contiguous tensor, got strides {t.stride()} for shape "
                         f"{list(t.shape)} (call .contiguous() first)")
    if last_dim_contiguous and t.dim() > 0 and t.stride(-1) != 1:
        raise InputError(f"{name}: expected unit stride in the last dimension, got strides {t.stride()}")
    if align_bytes and t.numel() > 0 and t.data_ptr() % align_bytes != 0:
        raise InputError(f"{name}: expected the data pointer aligned to {align_bytes} bytes, "
                         f"got address {t.data_ptr():#x} (offset {t.data_ptr() % align_bytes})")
    return t


def check_multiple(name: str, value: int, multiple: int) -> int:
    """Require value % multiple == 0 (e.g. K a multiple of the NVFP4 block)."""
    if value % multiple != 0:
        raise InputError(f"{name}: expected a multiple of {multiple}, got {value}")
    return value


def check_choice(name: str, value, choices: Sequence):
    if value not in choices:
        raise InputError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value
