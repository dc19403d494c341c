"""Nsight Compute source view of one fused wo GEMM launch (issue 3): which SASS instructions the warps
stall on. Profiles the given v5/v6 config at M (1, 8, 32 or 64) once (SourceCounters: warp-state samples
per instruction) and prints the instructions with the most samples, as shares of all samples. Writes
$OUT/ncu_source_<config>.csv (every instruction). Diagnostic only.

Run on the device: PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python3 scripts/wo_ncu_source.py M CONFIG [TOP]
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wo_ncu_v5 import DRIVER  # noqa: E402 - the same one-launch driver: a list of [M, config] pairs


def main() -> int:
    M, name = int(sys.argv[1]), sys.argv[2]
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    out = Path(os.environ.get("OUT", "/tmp/wo_ncu_source"))
    out.mkdir(parents=True, exist_ok=True)
    cmd = ["ncu", "--clock-control", "none", "--section", "SourceCounters", "--section", "WarpStateStats",
           "-k", "regex:w4a16_v[567]", "-c", "1", "--page", "source", "--print-source", "sass", "--csv",
           sys.executable, "-c", DRIVER, json.dumps([[M, name]])]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=500)
    (out / f"ncu_source_{name}.csv").write_text(p.stdout)
    if p.returncode:
        print(p.stdout[-3000:], p.stderr[-3000:])
        return p.returncode
    lines = p.stdout.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith('"#"') or ln.startswith('"Address"')), None)
    if start is None:
        print(p.stdout[-3000:])
        return 1
    rows = list(csv.DictReader(io.StringIO("\n".join(lines[start:]))))
    cols = list(rows[0].keys())
    samp = next((c for c in cols if "Sampling (All" in c), None)
    if samp is None:
        print("columns:", cols)
        print("\n".join(lines[start:start + 5]))
        return 1
    total = sum(float(r[samp] or 0) for r in rows)
    print(f"{name} at M={M}: {len(rows)} SASS instructions, {total:.0f} warp-state samples; columns: {cols[:12]}")
    by_op: dict[str, float] = {}  # samples by opcode (predicate and modifiers dropped)
    for r in rows:
        toks = [t for t in r.get("Source", "").split() if not t.startswith("@")]
        op = toks[0].split(".")[0] if toks else "?"
        by_op[op] = by_op.get(op, 0.0) + float(r[samp] or 0)
    print("by opcode:", ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])[:16]))
    rows.sort(key=lambda r: -float(r[samp] or 0))
    for r in rows[:top]:
        s = float(r[samp] or 0)
        print(f"{100 * s / total:5.1f}%  {r.get('Address', '')}  {r.get('Source', '')[:90]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
