"""Result records: how GPU measurements reach CPU-only machines, with provenance and a staleness check.

`data/results/<name>.json` holds one benchmark's cases, the device and software that produced them, the
command and commit, and `source_hash`: a sha256 over the files the results depend on. A record whose
hash no longer matches the code is stale: the kernel changed and its numbers must be measured again.
"""

from __future__ import annotations

import datetime as _dt
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..runtime.kernels import REPO_ROOT, hash_files, source_files
from .timing import Timing

RESULTS_DIR = REPO_ROOT / "data" / "results"
SCHEMA_PATH = REPO_ROOT / "data" / "results.schema.json"
SCHEMA_VERSION = 1

# Code every measured record depends on: the timer and the compiler front end (its options shape the
# cubin). Techniques whose numbers depend on the launch path (PDL) list workbench/runtime/launch.py.
COMMON_SOURCES = ("workbench/bench/timing.py", "workbench/runtime/kernels.py")


@dataclass
class Case:
    """One benchmark case: several variants timed in one run, validated, with their bound."""

    name: str
    params: dict
    variants: dict[str, Timing]
    baseline: str
    optimized: str
    bound_us: float
    validation: dict = field(default_factory=dict)
    bound_kind: str = "memory"

    def __post_init__(self):
        for role, v in (("baseline", self.baseline), ("optimized", self.optimized)):
            if v not in self.variants:
                raise ValueError(f"case {self.name}: {role} {v!r} is not one of the variants {list(self.variants)}")
        if "passed" not in self.validation:
            raise ValueError(f"case {self.name}: validation must say whether it passed")

    @property
    def speedup(self) -> float:
        return self.variants[self.baseline].median_us / self.variants[self.optimized].median_us

    def to_record(self) -> dict:
        return {
            "name": self.name,
            "params": self.params,
            "variants": {k: t.to_record() for k, t in self.variants.items()},
            "methods": {k: t.method for k, t in self.variants.items()},
            "baseline": self.baseline,
            "optimized": self.optimized,
            "bound_us": round(self.bound_us, 3),
            "bound_kind": self.bound_kind,
            "validation": self.validation,
        }


def sources_hash(sources) -> str:
    """sha256 over Python files and kernels (a kernel name expands to its file and included headers)."""
    paths: list[Path] = []
    for s in (*COMMON_SOURCES, *sources):
        if s.endswith(".py") or "/" in s:
            paths.append(REPO_ROOT / s)
        else:
            paths.extend(source_files(s))
    return hash_files(dict.fromkeys(paths))


def git_commit() -> str | None:
    """HEAD (with -dirty for uncommitted changes); WORKBENCH_GIT_COMMIT overrides it where the tree has no .git
    (the GPU hosts receive a copy of the working tree without the repository)."""
    import os

    if os.environ.get("WORKBENCH_GIT_COMMIT"):
        return os.environ["WORKBENCH_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=10)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def make_record(technique: str, cases: list[Case], sources, *, ceilings=None, extra: dict | None = None,
                command: str | None = None) -> dict:
    """Build a record dict for `technique` (the caller writes it with `write_record`)."""
    from ..runtime.device import device_info, software_info

    dev = device_info()
    if ceilings is not None:
        dev["ceilings"] = {"copy_TBps": ceilings.copy_TBps, "bf16_TFLOPs": ceilings.bf16_TFLOPs,
                           "fp8_TFLOPs": ceilings.fp8_TFLOPs}
    rec = {
        "schema_version": SCHEMA_VERSION,
        "technique": technique,
        "recorded_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command or " ".join(["workbench", *sys.argv[1:]]),
        "git_commit": git_commit(),
        "device": dev,
        "software": software_info(),
        "sources": list(sources),
        "source_hash": sources_hash(sources),
        "cases": [c.to_record() for c in cases],
    }
    if extra:
        rec.update(extra)
    return rec


def record_path(technique: str, results_dir: Path | None = None) -> Path:
    return (results_dir or RESULTS_DIR) / f"{technique}.json"


def write_record(rec: dict, results_dir: Path | None = None) -> Path:
    validate_record(rec)
    path = record_path(rec["technique"], results_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=1, sort_keys=False) + "\n")
    return path


def load_record(technique: str, results_dir: Path | None = None) -> dict | None:
    path = record_path(technique, results_dir)
    return json.loads(path.read_text()) if path.exists() else None


def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def validate_record(rec: dict) -> None:
    """Raise jsonschema.ValidationError when `rec` breaks data/results.schema.json (plus role checks)."""
    import jsonschema

    jsonschema.validate(rec, load_schema())
    for case in rec.get("cases", []):
        for role in ("baseline", "optimized"):
            if case[role] not in case["variants"]:
                raise jsonschema.ValidationError(
                    f"{rec['technique']}/{case['name']}: {role} {case[role]!r} is not a variant")


def is_stale(rec: dict) -> bool:
    """True when the files the record depends on changed since it was measured."""
    return sources_hash(rec.get("sources", [])) != rec["source_hash"]


def provenance(rec: dict) -> str:
    """One line saying where a record came from, for notebooks and reports."""
    d = rec.get("device", {})
    stale = " - STALE: the code changed since" if is_stale(rec) else ""
    return (f"recorded on {d.get('name', '?')} ({d.get('sm_count', '?')} SMs, driver {d.get('driver', '?')}) "
            f"at {rec.get('recorded_utc', '?')}, commit {str(rec.get('git_commit'))[:12]}{stale}")


def all_records(results_dir: Path | None = None) -> dict[str, dict]:
    d = results_dir or RESULTS_DIR
    return {p.stem: json.loads(p.read_text()) for p in sorted(d.glob("*.json"))}
