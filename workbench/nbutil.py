"""Small helpers every notebook uses: the setup banner, and 'live on GPU, recorded on CPU' results."""

from __future__ import annotations

import torch

from .bench.records import load_record, make_record, provenance
from .runtime.checks import InputError
from .runtime.device import device_info, resolve_device, software_info


def banner(device: str = "auto") -> torch.device:
    """Resolve DEVICE, print the device and versions, set up plotly; returns the torch device."""
    from . import viz

    viz.setup()
    dev = resolve_device(device)
    info = device_info() if dev.type == "cuda" else {"name": "cpu"}
    sw = software_info()
    print(f"device: {dev} ({info.get('name')}"
          + (f", {info.get('sm_count')} SMs, cc {info.get('capability')}" if dev.type == "cuda" else "") + ")")
    print("software: " + ", ".join(f"{k} {v}" for k, v in sw.items() if v))
    return dev


def results(name: str, device: torch.device, smoke: bool = False, live: bool | None = None) -> dict | None:
    """The record to show for benchmark `name`.

    On a GPU (and `live` not False) the benchmark runs now, validated and timed, and an in-memory record
    is returned (labelled as live). On CPU, or with `live=False`, the committed data/results/<name>.json is
    returned, or None. `live=True` on a CPU device is an InputError (the benchmarks time CUDA kernels).
    """
    from .techniques import get

    if live is None:
        live = device.type == "cuda"
    elif live and device.type != "cuda":
        raise InputError(f"results({name!r}): live=True needs a CUDA device, got device {device}; pass live=None "
                         "or False to show the committed record")
    if live:
        b = get(name)
        cases = b.run(smoke=smoke, progress=True)
        from .bench import current_ceilings

        rec = make_record(name, cases, b.sources, ceilings=current_ceilings(), command=f"notebook live run ({name})")
        rec["live"] = True
        return rec
    return load_record(name)


def diagnostic(name: str) -> dict | None:
    """data/diagnostics/<name>.json: a GPU measurement the notes cite that is not a record (no validation
    of its own: diagnostic builds compute no output), or None if it is missing."""
    import json

    from .runtime.kernels import REPO_ROOT

    path = REPO_ROOT / "data" / "diagnostics" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def finalize_tail_us(trace: dict | str) -> float | None:
    """How long wo_finalize ends after the GEMM in one traced variant of scripts/gpu_wo_trace.py (its `trace` entry:
    kernels' median durations and the idle gap before each). wo_finalize starts early (PDL), so its gap is negative:
    its end after the GEMM's end is that gap plus its duration. None when the variant has no wo_finalize."""
    if not isinstance(trace, dict) or "wo_finalize" not in trace.get("kernels", {}):
        return None
    gap = trace.get("gap_before_us", {}).get("wo_finalize")
    return None if gap is None else gap + trace["kernels"]["wo_finalize"]["median_us"]


def card_records(name: str, primary: dict | None = None) -> list[dict]:
    """Records of benchmark `name`, one per GPU model: `primary` (the notebook's record, committed or live) first,
    then the committed runs of other cards (data/diagnostics/<name>_record_*.json: records kept when the main
    record moved to another card)."""
    import json

    from .runtime.kernels import REPO_ROOT

    recs = [primary] if primary else []
    for path in sorted((REPO_ROOT / "data" / "diagnostics").glob(f"{name}_record_*.json")):
        rec = json.loads(path.read_text())
        if all(r["device"]["name"] != rec["device"]["name"] for r in recs):
            recs.append(rec)
    return recs


def wo_records(primary: dict | None = None) -> list[dict]:
    """wo_gemm records, one per GPU model (card_records)."""
    return card_records("wo_gemm", primary)


def wo_bounds(records: list[dict], device_name: str) -> dict[int, float]:
    """{M: weight-read bound in us} from the wo_gemm record of that GPU model ({} if none is among `records`): a
    diagnostic measured on one card is held against that card's bounds."""
    rec = next((r for r in records if r["device"]["name"] == device_name), None)
    return {c["params"]["M"]: c["bound_us"] for c in rec["cases"]} if rec else {}


def describe(rec: dict | None, name: str = "") -> str:
    """A line saying where the numbers come from."""
    if rec is None:
        return f"No GPU results recorded yet for {name!r} (run `workbench bench {name} --record` on a GPU)."
    if rec.get("live"):
        return f"Measured live in this run on {rec['device']['name']}."
    return provenance(rec)


def print_kernel_resources(kernel: str) -> None:
    """ptxas report of every entry point of kernels/<kernel>.cu for sm_90a (compile-only; no GPU needed)."""
    from .runtime import compile_kernel

    try:
        import cuda.bindings.nvrtc  # noqa: F401
    except ImportError:
        print(f"  (no NVRTC here: install the `compile` extra to see the sm_90a report of kernels/{kernel}.cu)")
        return
    for name, r in compile_kernel(kernel).resources.items():
        print(f"  {name}: {r.registers} registers, {r.spill_stores} B spill stores, {r.smem_bytes} B shared")
