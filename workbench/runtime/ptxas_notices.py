"""Reading ptxas's performance notices from a compile log (kept apart from runtime/kernels.py, which every record
hashes as a source: a reader of logs changes no measurement)."""

from __future__ import annotations

from .kernels import CompiledKernel


def serialized_wgmma(ck: CompiledKernel) -> set[str]:
    """Entry points of `ck` (template expression where known, else lowered name) whose wgmma ptxas serialized: every
    "... are serialized" notice in the log (C7512 register pressure; C7513 / C7514 non-wgmma instructions writing or
    reading wgmma registers inside the pipeline). Such a build's time measures the serialization, not its design."""
    names = {low: e for e, low in ck.lowered.items()}
    lowered = [line.split("'")[1] for line in ck.log.splitlines() if "are serialized" in line and line.count("'") >= 2]
    return {names.get(low, low) for low in lowered}
