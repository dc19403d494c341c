"""The `workbench` command: list, run, bench, ceilings, doctor, report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .runtime.kernels import REPO_ROOT


def _parse_value(v: str):
    """-p values: JSON literals (numbers, true/false, lists) or Python True/False, else a string."""
    if v in ("True", "False"):
        return v == "True"
    try:
        return json.loads(v)
    except ValueError:
        return v


def cmd_list(args) -> int:
    from .bench.records import all_records, is_stale
    from .report import list_notebooks
    from .techniques import REGISTRY

    recs = all_records()
    print("Benchmarks (record, notebook, status):")
    for name, b in REGISTRY.items():
        rec = recs.get(name)
        status = ("not yet recorded" if rec is None else
                  f"recorded on {rec['device']['name']} {rec['recorded_utc']}" + (" (STALE)" if is_stale(rec) else ""))
        print(f"  {name:14s} {str(b.notebook):22s} {status}")
    print("Notebooks:")
    for nb in list_notebooks():
        print(f"  {nb.stem}")
    return 0


def cmd_run(args) -> int:
    from tqdm import tqdm

    from .report import execute_notebook, select_notebooks, write_index
    from .runtime.device import has_cuda

    device = args.device
    if device == "auto":
        device = "cuda" if has_cuda() else "cpu"
    smoke = args.smoke if args.smoke is not None else device == "cpu"
    params = {"DEVICE": device, "SMOKE": smoke, "INTERACTIVE": False}
    for k, v in args.param or []:
        params[k] = _parse_value(v)
    nbs = select_notebooks(args.names)
    out = Path(args.out)
    runs = []
    bar = tqdm(nbs, desc="notebooks", unit="nb", file=sys.stderr)
    for nb in bar:
        bar.set_postfix_str(nb.stem)
        runs.append(execute_notebook(nb, out, params, timeout=args.timeout))
    index = write_index(runs, out)
    failed = [r for r in runs if not r.ok]
    for r in runs:
        print(f"{'ok    ' if r.ok else 'FAILED'} {r.name:28s} {r.seconds:7.1f} s  -> {r.html or r.output}")
    print(f"report: {index}")
    if failed:
        for r in failed:
            print(f"error: notebook {r.name} failed at code cell {r.failed_cell}: {r.error} (see {r.output})",
                  file=sys.stderr)
        return 1
    return 0


def _print_cases(cases) -> None:
    print(f"{'case':22s} {'variant':24s} {'median us':>10s} {'p20':>9s} {'p80':>9s} {'bound us':>9s} {'% bound':>8s}")
    for c in cases:
        for v, t in c.variants.items():
            role = " (baseline)" if v == c.baseline else " (optimized)" if v == c.optimized else ""
            pct = 100 * c.bound_us / t.median_us if c.bound_us else float("nan")
            print(f"{c.name:22s} {(v + role):24s} {t.median_us:10.2f} {t.p20_us:9.2f} {t.p80_us:9.2f} "
                  f"{c.bound_us:9.2f} {pct:7.1f}%")
        print(f"{'':22s} speedup {c.speedup:.2f}x; validation {'passed' if c.validation['passed'] else 'FAILED'}")


def cmd_bench(args) -> int:
    from .bench.ceilings import current_ceilings
    from .bench.records import make_record, write_record
    from .runtime.device import has_cuda
    from .techniques import REGISTRY, get

    if not has_cuda():
        print("workbench bench: needs a CUDA GPU (recorded results are in data/results/)", file=sys.stderr)
        return 2
    names = list(REGISTRY) if args.names == ["all"] else args.names
    rc = 0
    for name in names:
        b = get(name)
        print(f"== {name}: {b.title}")
        cases = b.run(smoke=args.smoke, progress=True)
        if not cases:
            print(f"error: {name}: the benchmark produced no cases on this machine (lm_head_tp needs >= 2 GPUs); "
                  "nothing recorded", file=sys.stderr)
            rc = 1
            continue
        _print_cases(cases)
        if not all(c.validation["passed"] for c in cases):
            print(f"error: {name}: validation failed; no record written", file=sys.stderr)
            rc = 1
            continue
        if args.record:
            rec = make_record(name, cases, b.sources, ceilings=current_ceilings(),
                              command="workbench bench " + " ".join(sys.argv[2:]))
            path = write_record(rec, Path(args.out) if args.out else None)
            print(f"recorded {path}")
    return rc


def cmd_ceilings(args) -> int:
    from .bench.ceilings import datasheet_for, measure_ceilings
    from .bench.records import load_record, make_record, write_record
    from .runtime.device import has_cuda

    if not has_cuda():
        print("workbench ceilings: needs a CUDA GPU", file=sys.stderr)
        return 2
    c = measure_ceilings(progress=lambda s: print(f"  measuring {s} ...", flush=True))
    ds = datasheet_for(c.device) or {}
    print(f"device {c.device}")
    print(f"  copy bandwidth {c.copy_TBps:.3f} TB/s (read + write)"
          + (f" = {100 * c.copy_TBps / ds['hbm_TBps']:.1f}% of the {ds['hbm_TBps']} TB/s datasheet" if ds else ""))
    print(f"  bf16 matmul    {c.bf16_TFLOPs:.1f} TFLOP/s" + (f" ({100 * c.bf16_TFLOPs / ds['bf16_TFLOPs']:.1f}% of datasheet)" if ds else ""))
    print(f"  fp8 matmul     {c.fp8_TFLOPs:.1f} TFLOP/s" + (f" ({100 * c.fp8_TFLOPs / ds['fp8_TFLOPs']:.1f}% of datasheet)" if ds else ""))
    if args.record:
        out = Path(args.out) if args.out else None
        old = load_record("ceilings", out) or load_record("ceilings") or {}
        entries = [e for e in old.get("ceilings", []) if e["device"] != c.device]
        entries.append({"device": c.device, "copy_TBps": c.copy_TBps, "bf16_TFLOPs": c.bf16_TFLOPs,
                        "fp8_TFLOPs": c.fp8_TFLOPs})
        rec = make_record("ceilings", [], ("workbench/bench/ceilings.py",), ceilings=c,
                          command="workbench ceilings --record", extra={"ceilings": entries})
        print(f"recorded {write_record(rec, out)}")
    return 0


def cmd_doctor(args) -> int:
    import platform

    from .runtime.device import device_info, has_cuda, software_info
    from .runtime.kernels import compile_kernel, list_kernels, load_module

    print(f"python {platform.python_version()} ({sys.executable})")
    for k, v in software_info().items():
        print(f"  {k:8s} {v}")
    gpu = has_cuda()
    print(f"GPU: {device_info() if gpu else 'none (CPU only: kernels are compile-checked for sm_90a)'}")
    bad = 0
    for name in list_kernels():
        try:
            if gpu:
                mod = load_module(name)
                comp = mod.compiled
            else:
                comp = compile_kernel(name, arch="sm_90a")
            worst = max((r.registers for r in comp.resources.values()), default=0)
            spills = [r.name for r in comp.resources.values() if r.spills]
            print(f"  kernel {name:16s} ok ({comp.arch}, {len(comp.resources)} entry points, max {worst} registers"
                  + (f", SPILLS in {spills}" if spills else "") + ")")
        except Exception as e:
            bad += 1
            print(f"  kernel {name:16s} FAILED: {str(e).splitlines()[0]}")
    return 1 if bad else 0


def cmd_report(args) -> int:
    from .report import NotebookRun, export_html, write_index

    out = Path(args.out)
    runs = []
    for nb in sorted(out.glob("[0-9][0-9]_*.ipynb")):
        html = export_html(nb)
        runs.append(NotebookRun(nb.stem, True, 0.0, nb, html))
    print(f"report: {write_index(runs, out)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workbench", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    sub.add_parser("list", help="benchmarks, notebooks and the status of their records").set_defaults(fn=cmd_list)

    r = sub.add_parser("run", help="execute notebooks headlessly into reports/ (papermill) and build index.html")
    r.add_argument("names", nargs="*", help="notebook stems, numbers or words (default: all)")
    r.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="override a notebook parameter (JSON or Python literal)")
    r.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    r.add_argument("--smoke", action=argparse.BooleanOptionalAction, default=None,
                   help="small sizes (default: on for cpu, off for cuda)")
    r.add_argument("--out", default=str(REPO_ROOT / "reports"), help="output folder (default reports/)")
    r.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    r.set_defaults(fn=cmd_run)

    b = sub.add_parser("bench", help="validate and time a technique on the GPU; --record writes data/results/")
    b.add_argument("names", nargs="+", help="benchmark names (see `workbench list`) or 'all'")
    b.add_argument("--record", action="store_true", help="write data/results/<name>.json")
    b.add_argument("--smoke", action="store_true", help="small sizes")
    b.add_argument("--out", default=None, help="results folder (default data/results/)")
    b.set_defaults(fn=cmd_bench)

    c = sub.add_parser("ceilings", help="measure copy bandwidth and bf16/fp8 matmul peaks of this GPU")
    c.add_argument("--record", action="store_true", help="write data/results/ceilings.json")
    c.add_argument("--out", default=None, help="results folder (default data/results/)")
    c.set_defaults(fn=cmd_ceilings)

    sub.add_parser("doctor", help="check Python, torch, CuPy, NVRTC, the GPU; compile every kernel").set_defaults(
        fn=cmd_doctor)

    rep = sub.add_parser("report", help="rebuild reports/index.html from executed notebooks")
    rep.add_argument("--out", default=str(REPO_ROOT / "reports"))
    rep.set_defaults(fn=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
