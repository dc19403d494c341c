"""Device choice and a description of the machine, for notebooks, records and `workbench doctor`."""

from __future__ import annotations

import platform
import subprocess

import torch


def has_cuda() -> bool:
    return torch.cuda.is_available()


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda when a GPU is present, else cpu. 'cuda' without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if has_cuda() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not has_cuda():
        raise RuntimeError(f"device: asked for {device!r} but torch sees no CUDA GPU "
                           f"(torch {torch.__version__}, built with CUDA {torch.version.cuda})")
    if dev.type not in ("cuda", "cpu"):
        raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    return dev


def _driver_version() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def device_info(index: int | None = None) -> dict:
    """Name, SM count, capability, memory, L2 and driver of a CUDA device (or {'name': 'cpu', ...})."""
    if not has_cuda():
        return {"name": "cpu", "processor": platform.processor() or platform.machine()}
    idx = torch.cuda.current_device() if index is None else index
    p = torch.cuda.get_device_properties(idx)
    return {
        "name": p.name,
        "sm_count": p.multi_processor_count,
        "capability": f"{p.major}.{p.minor}",
        "memory_GiB": round(p.total_memory / 2**30, 1),
        "l2_MB": round(getattr(p, "L2_cache_size", 0) / 1e6, 1),
        "driver": _driver_version(),
        "device_count": torch.cuda.device_count(),
    }


def software_info() -> dict:
    """Versions of the software the results depend on."""
    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda}
    for mod, key in (("cupy", "cupy"), ("triton", "triton")):
        try:
            info[key] = __import__(mod).__version__
        except Exception:
            info[key] = None
    try:
        from .kernels import nvrtc_version

        info["nvrtc"] = nvrtc_version()
    except Exception:
        info["nvrtc"] = None
    return info
