"""CUDA-event timing: warm-up, cold L2 (flush) or rotated inputs, median with p20/p80, graph replay.

`time_cuda(fn)` is the one timer of the workbench. Two modes:
- eager (default): each sample is one call of `fn` between two CUDA events; before each sample a
  buffer of 2x the L2 size is zeroed so the call starts with a cold L2 (`l2="flush"`), or not
  (`l2="warm"`). The GPU is then held in a short spin (`torch.cuda._sleep`, ~`head_start_us`) before the
  start event, so the host has enqueued `fn`'s kernels by the time the GPU reaches it: the sample
  measures GPU time, not the Python wrapper's host time. (Without it, a wrapper that spends 100 us on
  the host before launching adds 100 us to every sample whenever the GPU is idle.)
- graph (`graph=True`): `inner` back-to-back calls are captured once into a CUDA graph and each
  sample is one replay divided by `inner`. This removes host launch gaps, which dominate
  microsecond kernels. Pass a list of callables (one per input set, together > 3x L2) to rotate
  inputs so that back-to-back calls do not hit in L2.
`time_variants({...})` times the variants of one case in interleaved rounds (A, B, C, A, B, C, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch


@dataclass
class Timing:
    """Summary of repeated timings of one variant, in microseconds."""

    median_us: float
    p20_us: float
    p80_us: float
    n: int
    method: dict = field(default_factory=dict)

    def to_record(self) -> dict:
        return {"median_us": round(self.median_us, 3), "p20_us": round(self.p20_us, 3),
                "p80_us": round(self.p80_us, 3)}

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.median_us:9.2f} us (p20 {self.p20_us:.2f}, p80 {self.p80_us:.2f}, n={self.n})"


def summarize(samples_us: Sequence[float], method: dict | None = None) -> Timing:
    a = np.asarray(samples_us, dtype=np.float64)
    if a.size == 0:
        raise ValueError("summarize: no samples")
    return Timing(float(np.median(a)), float(np.percentile(a, 20)), float(np.percentile(a, 80)), int(a.size),
                  dict(method or {}))


_FLUSH: dict[int, torch.Tensor] = {}


def l2_flush_buffer(device=None) -> torch.Tensor:
    """A buffer of twice the device's L2 (at least 128 MB); zeroing it evicts the L2."""
    idx = torch.cuda.current_device() if device is None else torch.device(device).index or 0
    if idx not in _FLUSH:
        l2 = getattr(torch.cuda.get_device_properties(idx), "L2_cache_size", 50 * 2**20) or 50 * 2**20
        _FLUSH[idx] = torch.empty(max(2 * l2, 128 * 2**20), dtype=torch.uint8, device=f"cuda:{idx}")
    return _FLUSH[idx]


def _spin_cycles(us: float) -> int:
    """GPU clock cycles that take about `us` microseconds at the SM clock (clock_rate is in kHz)."""
    if us <= 0:
        return 0
    khz = getattr(torch.cuda.get_device_properties(torch.cuda.current_device()), "clock_rate", 1_980_000)
    return int(us * khz / 1e3)


def _as_list(fn) -> list[Callable[[], object]]:
    return list(fn) if isinstance(fn, (list, tuple)) else [fn]


def time_cuda(
    fn: Callable[[], object] | Sequence[Callable[[], object]],
    *,
    reps: int = 50,
    warmup: int = 5,
    l2: str = "flush",
    graph: bool = False,
    inner: int = 20,
    max_seconds: float = 10.0,
    head_start_us: float = 300.0,
    _return_samples: bool = False,
) -> Timing:
    """Time `fn()` on the current CUDA stream; returns median/p20/p80 in microseconds.

    reps: number of samples (stops early after `max_seconds` of wall time, keeping at least 5);
    l2: "flush" (zero 2x L2 before each eager sample) or "warm"; graph/inner: see the module docstring.
    """
    import time

    if not torch.cuda.is_available():
        raise RuntimeError("time_cuda: needs a CUDA device")
    if l2 not in ("flush", "warm"):
        raise ValueError(f"l2: expected 'flush' or 'warm', got {l2!r}")
    fns = _as_list(fn)
    stream = torch.cuda.current_stream()
    for i in range(max(warmup, len(fns))):
        fns[i % len(fns)]()
    torch.cuda.synchronize()

    samples: list[float] = []
    t_end = time.perf_counter() + max_seconds
    if not graph:
        flush = l2_flush_buffer() if l2 == "flush" else None
        spin = _spin_cycles(head_start_us)
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        done = 0
        for i in range(reps):
            if flush is not None:
                flush.zero_()
            if spin:
                torch.cuda._sleep(spin)
            starts[i].record(stream)
            fns[i % len(fns)]()
            ends[i].record(stream)
            done += 1
            if done >= 5 and time.perf_counter() > t_end:
                break
        torch.cuda.synchronize()
        samples = [starts[i].elapsed_time(ends[i]) * 1e3 for i in range(done)]
        method = {"timer": "cuda_event", "l2": l2, "warmup": warmup, "inputs": len(fns),
                  "head_start_us": head_start_us}
        if _return_samples:
            method["samples_us"] = samples
        return summarize(samples, method)

    # Graph mode: capture `inner` back-to-back calls (rotating input sets) on a side stream.
    g = torch.cuda.CUDAGraph()
    side = torch.cuda.Stream()
    side.wait_stream(stream)
    with torch.cuda.stream(side):
        for i in range(len(fns)):  # warm up on the capture stream (allocator, lazy init)
            fns[i]()
        torch.cuda.synchronize()
        with torch.cuda.graph(g, stream=side):
            for i in range(inner):
                fns[i % len(fns)]()
    torch.cuda.synchronize()
    for _ in range(2):
        g.replay()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    done = 0
    for i in range(reps):
        starts[i].record(stream)
        g.replay()
        ends[i].record(stream)
        done += 1
        if done >= 5 and time.perf_counter() > t_end:
            break
    torch.cuda.synchronize()
    samples = [starts[i].elapsed_time(ends[i]) * 1e3 / inner for i in range(done)]
    method = {"timer": "cuda_graph", "inner": inner, "l2": "rotate" if len(fns) > 1 else "warm",
              "inputs": len(fns)}
    if _return_samples:
        method["samples_us"] = samples
    return summarize(samples, method)


def time_variants(fns: dict[str, Callable[[], object] | Sequence[Callable[[], object]]], *, rounds: int = 3,
                  reps: int = 30, **kw) -> dict[str, Timing]:
    """Time several variants of one case in interleaved rounds and merge each variant's samples.

    Clocks and power state drift during a run (a GPU just out of a matmul burst runs memory-bound SM
    kernels differently for a while); timing A, B, C, A, B, C, ... spreads that drift over every variant
    instead of charging it to whichever ran first. Keyword arguments go to `time_cuda`.
    """
    per_round = max(5, reps // rounds)
    samples: dict[str, list[float]] = {k: [] for k in fns}
    methods: dict[str, dict] = {}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time_cuda(fn, reps=per_round, _return_samples=True, **kw)
            samples[name].extend(t.method.pop("samples_us"))
            methods[name] = {**t.method, "rounds": rounds}
    return {name: summarize(samples[name], methods[name]) for name in fns}
