"""One GPU session for issue 3 (NVFP4 + wo GEMM): compile report, benchmarks with validation, the
accuracy study at full size, then the GPU tests. Writes records and logs under $OUT.

Run on the device: PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python3 scripts/gpu_nvfp4.py [--smoke] [--skip-tests]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

T0 = time.time()


def log(msg: str) -> None:
    print(f"[{time.time() - T0:6.1f}s] {msg}", flush=True)


def write(rec: dict, out: Path) -> None:
    from workbench.bench import write_record

    try:
        p = write_record(rec, results_dir=out)
    except ImportError:  # jsonschema missing on the device: validated on the CPU host after fetching
        p = out / f"{rec['technique']}.json"
        p.write_text(json.dumps(rec, indent=1) + "\n")
    log(f"wrote {p}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--budget", type=float, default=280.0, help="seconds for the whole script")
    ap.add_argument("--only", choices=("nvfp4", "wo_gemm"), help="benchmark one technique")
    args = ap.parse_args()
    out = Path(os.environ.get("OUT", "/tmp/gpu_nvfp4_out"))
    out.mkdir(parents=True, exist_ok=True)

    import torch

    from workbench.bench import current_ceilings, make_record
    from workbench.runtime import device_info, load_module
    from workbench.techniques import get
    from workbench.techniques import wo_gemm as wo

    log(f"device {device_info()}")
    for name in ("nvfp4", "wo_gemm"):
        mod = load_module(name)
        names = {low: expr for expr, low in mod.compiled.lowered.items()}
        for low, r in mod.compiled.resources.items():
            log(f"  {name}:{names.get(low, low)} regs {r.registers} spills {r.spill_stores}/{r.spill_loads}")
    ceil = current_ceilings()
    log(f"ceilings {ceil}")

    results = {}
    for name in ((args.only,) if args.only else ("nvfp4", "wo_gemm")):
        b = get(name)
        log(f"benchmark {name}")
        try:
            cases = b.run(smoke=args.smoke, progress=True)
        except Exception as e:  # keep going: the other record and the tests still tell something
            import traceback

            traceback.print_exc()
            log(f"benchmark {name} FAILED: {e}")
            continue
        extra = None
        if name == "wo_gemm":
            extra = {"fused_tuning": {str(m): str(c) for m, c in wo.FUSED_TUNING.items()},
                     "dispatch": {str(m): wo.dispatch_path(m) for m in wo.M_CASES}}
            try:
                log("accuracy study (M=64, full wo shape, GPU)")
                N, K = (wo.N_OUT, wo.K_IN) if not args.smoke else (512, 2048)
                rows = wo.accuracy_study(M=64, N=N, K=K, outlier_scales=(1.0, 10.0, 30.0, 100.0, 300.0),
                                         device="cuda")
                extra["accuracy_study"] = {"M": 64, "N": N, "K": K, "rows": rows}
                for r in rows:
                    log(f"  {r['outlier_scale']:6.0f} {r['format']:16s} rel_l2 {r['rel_l2']:.5f} cos {r['cosine']:.6f}")
            except Exception as e:
                log(f"accuracy study FAILED: {e}")
        rec = make_record(name, cases, b.sources, ceilings=ceil, extra=extra,
                          command=f"python scripts/gpu_nvfp4.py{' --smoke' if args.smoke else ''}")
        write(rec, out)
        results[name] = rec
        torch.cuda.empty_cache()

    if not args.skip_tests:
        left = args.budget - (time.time() - T0)
        log(f"GPU tests ({left:.0f} s left)")
        if left > 20:
            try:
                p = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                                    "tests/test_nvfp4.py", "tests/test_wo_gemm.py",
                                    "tests/test_wo_gemm_v5.py", "tests/test_wo_gemm_v7.py", "tests/test_wo_gemm_v8.py",
                                    "tests/test_wo_gemm_v9.py"],
                                   capture_output=True, text=True,
                                   timeout=left - 10)
                (out / "pytest_gpu.txt").write_text(p.stdout + p.stderr)
                print("\n".join((p.stdout + p.stderr).splitlines()[-25:]))
            except subprocess.TimeoutExpired as e:
                (out / "pytest_gpu.txt").write_text(f"TIMEOUT\n{e.stdout or ''}")
                log("GPU tests timed out")
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
