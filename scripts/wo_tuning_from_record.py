"""Write the wo GEMM's per-GPU tuning table (data/tuned/wo_gemm.json) from wo_gemm records (issue 3).

Each record's device gets the fused configs its run measured fastest (the record's `fused_tuning`), with the
record's path, commit and date; the entries of other devices stay. `wo_nvfp4` uses the table of the GPU it
runs on when no tuning is given.

Run on any machine: python scripts/wo_tuning_from_record.py data/results/wo_gemm.json [more records...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from workbench.runtime.kernels import REPO_ROOT  # noqa: E402
from workbench.techniques import wo_gemm as wo  # noqa: E402


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__)
        return 2
    table = json.loads(wo.TUNING_PATH.read_text()) if wo.TUNING_PATH.exists() else {
        "what": "wo_nvfp4's fused config per M and GPU model at the wo shape (N 7168, K 16384), measured fastest "
                "in the named record's run; written by scripts/wo_tuning_from_record.py",
        "devices": {}}
    for p in paths:
        path = Path(p).resolve()
        name, entry = wo.tuning_entry(json.loads(path.read_text()), str(path.relative_to(REPO_ROOT)))
        table["devices"][name] = entry
        print(f"{name}: {entry['fused']} ({entry['record']}, {entry['git_commit']})")
    wo.TUNING_PATH.parent.mkdir(parents=True, exist_ok=True)
    wo.TUNING_PATH.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"wrote {wo.TUNING_PATH.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
