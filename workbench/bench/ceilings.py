"""Measured ceilings of the current GPU and the bound (floor time) of a kernel.

A bound is the larger of bytes / measured copy bandwidth and flops / measured matmul peak. Copy
bandwidth counts bytes read plus bytes written, so a kernel's `bytes` must count both too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Datasheet figures (leads, not measurements): HBM TB/s, dense bf16 / fp8 TFLOP/s.
DATASHEET = {
    "H100": {"hbm_TBps": 3.35, "bf16_TFLOPs": 989.0, "fp8_TFLOPs": 1979.0},
    "H200": {"hbm_TBps": 4.8, "bf16_TFLOPs": 989.0, "fp8_TFLOPs": 1979.0},
}


def datasheet_for(name: str) -> dict | None:
    """Datasheet entry for a device name such as 'NVIDIA H100 80GB HBM3' (None when unknown)."""
    for key, val in DATASHEET.items():
        if key in name:
            return val
    return None


@dataclass(frozen=True)
class Ceilings:
    device: str
    copy_TBps: float
    bf16_TFLOPs: float
    fp8_TFLOPs: float

    def bound_us(self, bytes: float = 0.0, flops: float = 0.0, dtype: str = "bf16") -> float:
        """Floor time in us: max(bytes / copy bandwidth, flops / matmul peak of `dtype`)."""
        peak = {"bf16": self.bf16_TFLOPs, "fp8": self.fp8_TFLOPs}[dtype]
        return max(bytes / (self.copy_TBps * 1e12), flops / (peak * 1e12)) * 1e6

    def bound_kind(self, bytes: float = 0.0, flops: float = 0.0, dtype: str = "bf16") -> str:
        peak = {"bf16": self.bf16_TFLOPs, "fp8": self.fp8_TFLOPs}[dtype]
        return "memory" if bytes / (self.copy_TBps * 1e12) >= flops / (peak * 1e12) else "compute"


def pct_of_bound(time_us: float, bound_us: float) -> float:
    """How close a time is to its bound: 100% means at the bound."""
    return 100.0 * bound_us / time_us if time_us > 0 else float("nan")


def measure_copy_TBps(nbytes: int = 2**30, reps: int = 30) -> float:
    """Device-to-device copy bandwidth (bytes read + written) of a large torch copy, median."""
    from .timing import time_cuda

    src = torch.randint(0, 255, (nbytes,), dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    t = time_cuda(lambda: dst.copy_(src), reps=reps, l2="warm")  # 1 GiB >> L2: warm is cold anyway
    if not torch.equal(src[:: 2**20], dst[:: 2**20]):
        raise RuntimeError("copy ceiling: destination differs from source")
    return 2 * nbytes / (t.median_us * 1e-6) / 1e12


def measure_matmul_TFLOPs(dtype: str = "bf16", n: int = 8192, reps: int = 20) -> float:
    """Dense matmul rate on random n x n x n operands (torch/cuBLAS), median."""
    from .timing import time_cuda

    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    if dtype == "bf16":
        ref = (a[:64].float() @ b.float())
        out = a @ b
        if (out[:64].float() - ref).norm() / ref.norm() > 1e-2:
            raise RuntimeError("bf16 matmul ceiling: result does not match fp32")
        t = time_cuda(lambda: a @ b, reps=reps, l2="warm")
    elif dtype == "fp8":
        a8 = a.to(torch.float8_e4m3fn)
        b8 = b.to(torch.float8_e4m3fn).t().contiguous().t()  # column-major B, as _scaled_mm wants
        one = torch.ones((), device="cuda")
        out = torch._scaled_mm(a8, b8, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
        ref = a8[:64].float() @ b8.float()
        if (out[:64].float() - ref).norm() / ref.norm() > 1e-2:
            raise RuntimeError("fp8 matmul ceiling: result does not match fp32")
        t = time_cuda(lambda: torch._scaled_mm(a8, b8, scale_a=one, scale_b=one, out_dtype=torch.bfloat16),
                      reps=reps, l2="warm")
    else:
        raise ValueError(f"dtype: expected 'bf16' or 'fp8', got {dtype!r}")
    return 2 * n**3 / (t.median_us * 1e-6) / 1e12


def measure_ceilings(progress=None) -> Ceilings:
    """Measure copy bandwidth and bf16/fp8 matmul peaks on the current GPU (takes a few seconds)."""
    steps = [("copy", measure_copy_TBps), ("bf16", lambda: measure_matmul_TFLOPs("bf16")),
             ("fp8", lambda: measure_matmul_TFLOPs("fp8"))]
    vals = {}
    for name, f in steps:
        if progress:
            progress(name)
        vals[name] = f()
    return Ceilings(torch.cuda.get_device_name(), round(vals["copy"], 3), round(vals["bf16"], 1),
                    round(vals["fp8"], 1))


def recorded_ceilings(device_name: str | None = None) -> Ceilings | None:
    """Ceilings from data/results/ceilings.json (the entry for `device_name`, or the first)."""
    from .records import load_record

    rec = load_record("ceilings")
    if rec is None:
        return None
    entries = rec.get("ceilings", [])
    for e in entries:
        if device_name is None or e["device"] == device_name:
            return Ceilings(e["device"], e["copy_TBps"], e["bf16_TFLOPs"], e["fp8_TFLOPs"])
    return None


_CURRENT: Ceilings | None = None


def current_ceilings() -> Ceilings:
    """Ceilings of this GPU, measured once per process (bounds come from the card that ran the kernel)."""
    global _CURRENT
    if _CURRENT is None:
        _CURRENT = measure_ceilings()
    return _CURRENT
