"""Does the memory stream slow down with the SM clock that tensor-core work brings? (issue 3, nineteenth pass)

The eighteenth pass found that any kernel keeping the tensor cores busy runs this H200 at ~1.81-1.85 GHz instead of
1.98, and that the wo GEMM's wgmma-only twin took the stream-only twin's time times the clock ratio. If the weight
stream's rate follows the SM clock, the bound of a tensor-core kernel at M <= 8 is the bytes over the copy bandwidth
*at that clock*, not at 1.98 GHz.

The test: a companion kernel (kernels/clock_companion.cu) holds 4 SMs for the whole timed section with one kind of
work (idle sleep, FFMA chains, wgmma n64 or n8, mma.sync, wgmma n8 at a low duty or once) and measures its own SM clock; beside it, on the other SMs, each
workload runs as CUDA-graph replays: a 1 GiB device copy by the workbench's SM copy kernel (torch's copy_ captured in a
graph ran at 2.7 TB/s in the first run, against the 4.24 the ceiling measures outside graphs: a memcpy node, we
suppose, not an SM kernel), the wo GEMM's
stream-alone twin (DIAG 1, lean 3215, M = 8) and the recorded M = 1 build, both on 128 CTAs so that they fit on the
SMs the companion leaves. The companion asks for 120 KB of shared memory so that no GEMM CTA shares its SM (copy
blocks, which use none, do). A last companion, wgmma n64 on every SM with little shared memory, runs beside the copy
only. Stamps of the global timer around each timed section check that the companion covered it. Rounds interleave the
companions; medians. The recorded build is validated (rel-L2 1e-3 against the fp32 GEMM of its dequantized weight);
the DIAG twin computes nothing and is named as such. Writes $OUT/clock_stream.json. Diagnostic, no record.

Run on the device: PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python3 scripts/gpu_clock_stream.py [--rounds R]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_wo_power import ClockProbe  # noqa: E402
from gpu_wo_profile import capture_calls, log, wo_weights  # noqa: E402

COMPANIONS = [  # (label, KIND of clock_companion or None, CTAs (0: one per SM), dynamic shared memory)
    ("none", None, 0, 0),
    ("sleep x4", 0, 4, 120 << 10),
    ("ffma x4", 1, 4, 120 << 10),
    ("wgmma n8 x4", 3, 4, 120 << 10),
    ("wgmma n64 x4", 2, 4, 120 << 10),
    ("mma.sync x4", 4, 4, 120 << 10),
    ("wgmma n8 every 32 us x4", 5, 4, 120 << 10),
    ("wgmma n8 once x4", 6, 4, 120 << 10),
    ("wgmma n64 x all SMs", 2, 0, 16 << 10),  # beside the copy only: GEMM CTAs would not fit
]


def main() -> int:
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
    import torch

    from workbench.runtime import device_info, get_kernel, launch
    from workbench.techniques import copy
    from workbench.techniques import wo_gemm as wo
    from workbench.techniques import wo_gemm_v5 as v5

    out_dir = Path(os.environ.get("OUT", "/tmp/gpu_clock_stream"))
    out_dir.mkdir(parents=True, exist_ok=True)
    log(f"device {device_info()}")
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    pws, wref = wo_weights(2)
    tuned = wo.table_tuning(torch.cuda.get_device_name())
    diag = {(c.tokp, c.diag, c.lean): c for c in v5.V5_DIAGNOSTICS}
    rec1 = tuned[1].with_ctas(128)
    stream8 = diag[(8, 1, 3215)].with_ctas(128)
    x1, x8 = wo.make_activations(1, wo.K_IN, seed=501), wo.make_activations(8, wo.K_IN, seed=508)
    val = wo.validate(v5.w4a16_gemm_v5(x1, pws[0], rec1), wo.reference(x1, wref))
    if not val["passed"]:
        raise SystemExit(f"recorded M = 1 build {rec1}: failed validation {val}")
    log(f"recorded M = 1 build {rec1} validated: {val}")
    src = torch.randint(0, 255, (1 << 30,), dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    w_bytes = wo.weight_bytes("nvfp4")
    workloads = {  # label: (calls in turn, calls per graph, bytes per call)
        "copy 1 GiB (kernels/copy.cu v3)": ([lambda: copy.copy(src, dst)], 4, 2 * src.numel()),
        f"M=8 DIAG 1: the stream alone ({stream8})": ([lambda p=p: v5.w4a16_gemm_v5(x8, p, stream8) for p in pws],
                                                       24, w_bytes),
        f"M=1 recorded build ({rec1})": ([lambda p=p: v5.w4a16_gemm_v5(x1, p, rec1) for p in pws], 24, w_bytes),
    }
    graphs = {label: capture_calls(fns, n) for label, (fns, n, _) in workloads.items()}
    if not torch.equal(src[:: 1 << 20], dst[:: 1 << 20]):
        raise SystemExit("copy: destination differs from source")

    kinds = {k: get_kernel("clock_companion", f"clock_companion<{k}>") for k in range(7)}
    stamp = get_kernel("clock_companion", "global_stamp")
    comp_stream = torch.cuda.Stream()
    probe = ClockProbe()
    comp_out = torch.zeros(4 * sms, dtype=torch.int64, device="cuda")
    sink = torch.zeros(sms * 128, dtype=torch.float32, device="cuda")
    stamps = torch.zeros(2, dtype=torch.int64, device="cuda")

    # replays per timed section: ~10 ms of work each, measured once alone
    reps = {}
    for label, g in graphs.items():
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(3):
            g.replay()
        e.record()
        e.synchronize()
        reps[label] = max(3, round(10.0 / (s.elapsed_time(e) / 3)))
    log(f"replays per timed section: {reps}")

    # (not bench.time_cuda: each timed section must run inside the companion's window, between two global-timer
    # stamps, with the probe launched beside it)
    section_ms = 2.5 * 10.0 + 5.0  # the companion outlasts the warm-up and the ~10 ms of timed replays
    cells: dict[str, dict[str, dict]] = {w: {} for w in workloads}
    for r in range(rounds):
        for label, g in graphs.items():
            for comp, kind, ctas, smem in COMPANIONS:
                if ctas == 0 and kind is not None and not label.startswith("copy"):
                    continue
                n = reps[label]
                comp_out.zero_()
                if kind is not None:
                    launch(kinds[kind], ctas or sms, 128, (int(section_ms * 1e6), comp_out, sink), shared_mem=smem,
                           stream=comp_stream)
                g.replay()  # warm-up, and time for the companion to start
                g.replay()
                launch(stamp, 1, 32, (stamps, 0))
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                for i in range(n):
                    g.replay()
                    if i == 1:
                        probe.launch(1_000_000)
                e.record()
                launch(stamp, 1, 32, (stamps, 1))
                torch.cuda.synchronize()
                ghz_probe = probe.read()
                us = s.elapsed_time(e) * 1e3 / (n * workloads[label][1])
                cell = cells[label].setdefault(comp, {"us": [], "probe_GHz": [], "companion_GHz": [], "covered": []})
                cell["us"].append(round(us, 3))
                cell["probe_GHz"].append(ghz_probe)
                if kind is not None:
                    v = comp_out.view(-1, 4)[: ctas or sms].double().cpu()
                    st = stamps.cpu().tolist()
                    cell["companion_GHz"].append(round(float((v[:, 0] / v[:, 1]).median()), 3))
                    cell["covered"].append(bool((v[:, 2] <= st[0]).all() and (v[:, 3] >= st[1]).all()))
                log(f"round {r} {label[:40]:40s} {comp:22s} {us:8.2f} us/call  probe {ghz_probe} GHz  "
                    f"companion {cell['companion_GHz'][-1] if kind is not None else '-'} GHz  "
                    f"covered {cell['covered'][-1] if kind is not None else '-'}")
        if not torch.equal(src[:: 1 << 20], dst[:: 1 << 20]):
            raise SystemExit("copy: destination differs from source")

    rows = []
    for label, by_comp in cells.items():
        base = statistics.median(by_comp["sleep x4"]["us"])
        for comp, c in by_comp.items():
            us = statistics.median(c["us"])
            ghz = statistics.median(c["companion_GHz"]) if c["companion_GHz"] else None
            rows.append({"workload": label, "companion": comp, "us_per_call": round(us, 3),
                         "GB_per_s": round(workloads[label][2] / us / 1e3, 1),
                         "vs_sleep": round(us / base, 4), "companion_GHz": ghz,
                         "probe_GHz": statistics.median(c["probe_GHz"]),
                         "covered": all(c["covered"]) if c["covered"] else None, "rounds": c["us"]})
    print(f"\n{'workload':58s} {'companion':22s} {'us/call':>9s} {'GB/s':>8s} {'vs sleep':>9s} {'comp GHz':>9s} "
          f"{'probe GHz':>9s}")
    for row in rows:
        print(f"{row['workload'][:58]:58s} {row['companion']:22s} {row['us_per_call']:9.2f} {row['GB_per_s']:8.0f} "
              f"{row['vs_sleep']:9.3f} {str(row['companion_GHz']):>9s} {row['probe_GHz']:9.3f}")
    result = {"device": device_info(), "rounds": rounds, "validation_m1": val, "companions": COMPANIONS,
              "rows": rows}
    (out_dir / "clock_stream.json").write_text(json.dumps(result, indent=1))
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
