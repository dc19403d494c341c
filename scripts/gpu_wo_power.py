"""Clock and power beside the wo GEMM builds (issue 3, diagnostic): at what SM clock and power do this card's recorded
fused builds, their DIAG twins (the stream alone, the decode without wgmma, the wgmma without decode) and cuBLAS bf16
run when their calls go on for seconds, and what are the ratios to cuBLAS bf16 then?

Each build runs as CUDA-graph replays of 24 calls (two weights in turn, so no call finds its weight in L2) for a few
seconds, while `nvidia-smi -lms 20` streams the SM and memory clocks, the board power and the active clock-event
(throttle) reasons; the samples inside each build's window (its first 0.5 s dropped) are summarised. Every build that
computes an output is validated first (rel-L2 1e-3 against the fp32 GEMM of the dequantized weight); the DIAG builds
compute none and are named as such. Writes $OUT/wo_power.json. No record.

nvidia-smi's clock is the driver's reading; beside it a probe measures the SM clock itself: 4 one-warp blocks on a
second stream, which fit beside the GEMM's CTAs, each counting SM cycles (clock64) against the global timer (ns) over
~1 ms while the build replays (three probes per build, median; one on the idle GPU first, the probe's own check).

Run on the device: PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python3 scripts/gpu_wo_power.py [--seconds S]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_wo_profile import capture_calls, log, wo_weights  # noqa: E402

FIELDS = ["clocks.sm", "clocks.mem", "power.draw", "clocks_event_reasons.active"]


class SmiStream:
    """nvidia-smi's query loop in a subprocess; each line stamped with time.time() when it arrives."""

    def __init__(self, period_ms: int = 20):
        probe = subprocess.run(["nvidia-smi", "-i", "0", f"--query-gpu={FIELDS[3]}", "--format=csv,noheader"],
                               capture_output=True, text=True)
        if probe.returncode != 0:  # drivers before the rename call the reasons "throttle" reasons
            FIELDS[3] = "clocks_throttle_reasons.active"
        self.samples: list[tuple[float, list[str]]] = []
        self.proc = subprocess.Popen(["nvidia-smi", "-i", "0", f"--query-gpu={','.join(FIELDS)}",
                                      "--format=csv,noheader,nounits", f"-lms={period_ms}"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self.samples.append((time.time(), [f.strip() for f in line.split(",")]))

    def window(self, t0: float, t1: float) -> dict:
        rows = [f for t, f in self.samples if t0 <= t <= t1 and len(f) == len(FIELDS)]
        if not rows:
            return {"samples": 0}
        num = lambda i: [float(r[i]) for r in rows if r[i].replace(".", "", 1).isdigit()]  # noqa: E731
        reasons = {}
        for r in rows:
            reasons[r[3]] = reasons.get(r[3], 0) + 1
        return {"samples": len(rows), "sm_MHz_median": statistics.median(num(0)), "sm_MHz_min": min(num(0)),
                "mem_MHz_median": statistics.median(num(1)), "power_W_median": statistics.median(num(2)),
                "power_W_max": max(num(2)), "event_reasons": reasons}

    def stop(self):
        self.proc.terminate()


PROBE_SRC = r"""
extern "C" __global__ void clock_probe(unsigned long long* out, long long cycles) {
    if (threadIdx.x != 0) return;
    unsigned long long t0, t1;
    const long long c0 = clock64();
    long long c;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do { c = clock64(); } while (c - c0 < cycles);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t1));
    out[2 * blockIdx.x] = (unsigned long long)(c - c0);
    out[2 * blockIdx.x + 1] = t1 - t0;
}
"""


class ClockProbe:
    """SM cycles per ns (GHz) over ~1 ms, measured by 4 one-warp blocks on their own stream."""

    def __init__(self):
        import cupy as cp
        import torch

        self.cp, self.torch = cp, torch
        self.kernel = cp.RawKernel(PROBE_SRC, "clock_probe")
        self.stream = torch.cuda.Stream()
        self.out = cp.zeros(8, dtype=cp.uint64)

    def launch(self, cycles: int = 2_000_000):
        with self.cp.cuda.ExternalStream(self.stream.cuda_stream):  # (deprecated in newer CuPy, still served)
            self.kernel((4,), (32,), (self.out, self.cp.int64(cycles)))

    def read(self) -> float:
        self.stream.synchronize()
        v = self.out.get().reshape(4, 2).astype(float)
        return round(statistics.median(v[:, 0] / v[:, 1]), 3)


def main() -> int:
    seconds = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 3.0
    import torch

    from workbench.runtime import device_info
    from workbench.techniques import wo_gemm as wo
    from workbench.techniques import wo_gemm_v5 as v5

    out_dir = Path(os.environ.get("OUT", "/tmp/gpu_wo_power"))
    out_dir.mkdir(parents=True, exist_ok=True)
    log(f"device {device_info()}")
    K = wo.K_IN
    pws, wref = wo_weights(2)
    w_bf = wref.to(torch.bfloat16)
    lean = {(c.lean, c.gs): c for c in v5.V5_KERNELS_LEAN if c.tokp == 8}
    diag = {(c.tokp, c.diag, c.lean): c for c in v5.V5_DIAGNOSTICS}
    # the fused configs this GPU model's record chose (data/tuned/wo_gemm.json), as wo_nvfp4 launches them
    tuned = {m: c for m, c in wo.table_tuning(torch.cuda.get_device_name()).items() if isinstance(c, v5.V5Config)}

    def twin(m: int, d: int, lean_: int) -> list:  # the DIAG twin, where this source instantiates it
        what = {1: "the stream alone", 12: "the stream alone without x", 5: "the full kernel without x's copies",
                2: "the decode, no wgmma", 7: "the wgmma, no decode"}[d]
        c = diag.get((v5.v5_tokp_for(m), d, lean_))
        return [(f"M={m} DIAG {d}: {what} (lean {lean_})", m, c, False)] if c else []

    builds = [  # (label, M, config or "cublas_bf16", validated)
        *[(f"M={m} recorded build ({tuned[m]})", m, tuned[m], True) for m in (1,) if m in tuned],
        ("M=8 full kernel (lean 3215)", 8, v5.V5Config(8, 1, 4, 256, 5, 2, 2, 2, True, grouped=True, lean=3215), True),
        *twin(8, 5, 3215), *twin(8, 1, 3215), *twin(8, 12, 3215),
        # is it the tensor cores? the decode without any wgmma (DIAG 2) against the wgmma without the decode (DIAG 7)
        *twin(8, 2, 3215), *twin(8, 7, 3215),
        ("M=1 cuBLAS bf16", 1, "cublas_bf16", True),
        *[(f"M={m} recorded build ({tuned[m]})", m, tuned[m], True) for m in (8,) if m in tuned],
        ("M=8 cuBLAS bf16", 8, "cublas_bf16", True),
        *[(f"M={m} recorded build ({tuned[m]})", m, tuned[m], True) for m in (32, 64) if m in tuned],
        *[(f"M={m} cuBLAS bf16", m, "cublas_bf16", True) for m in (32, 64)],
        *twin(32, 2, 0), *twin(32, 7, 7), *twin(64, 2, 3), *twin(64, 7, 3),
    ]
    if (93327, 2) in lean:  # the mma.sync consumers (LEAN bit 16): built at commit c55cf6f, reverted after its runs
        builds.insert(1, ("M=1 mma.sync consumers (lean 93327, 128 CTAs)", 1,
                          lean[(93327, 2)].with_work(True).with_ctas(128), True))
    probe = ClockProbe()
    smi = SmiStream()
    time.sleep(1.0)
    t_idle = time.time()
    idle_ghz = []
    for _ in range(3):
        probe.launch()
        idle_ghz.append(probe.read())
    time.sleep(1.0)
    result = {"device": device_info(), "seconds": seconds,
              "idle": {**smi.window(t_idle, time.time()), "probe_GHz": statistics.median(idle_ghz)}, "builds": {}}
    log(f"idle: {result['idle']}")
    for label, M, cfg, validated in builds:
        x = wo.make_activations(M, K, seed=500 + M)
        if cfg == "cublas_bf16":
            fns = [lambda x=x: x @ w_bf.t()]
            val = wo.validate(x @ w_bf.t(), wo.reference(x, wref), 5e-3)
        else:
            fns = [lambda p=p, x=x, c=cfg: v5.w4a16_gemm_v5(x, p, c) for p in pws]
            val = wo.validate(v5.w4a16_gemm_v5(x, pws[0], cfg), wo.reference(x, wref)) if validated else None
        if validated and not val["passed"]:
            raise SystemExit(f"{label}: failed validation {val}")
        g = capture_calls(fns, 24)
        # (not bench.time_cuda: it times a burst of at most `reps` replays, ~10 ms; this runs for `seconds`, long
        # enough for the board's power management to act, as in a model serving calls back to back)
        t0 = time.time()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        reps, ghz = 0, []
        while time.time() - t0 < seconds:
            probing = 0.5 < time.time() - t0 and len(ghz) < 3
            for k in range(20):
                g.replay()
                if probing and k == 2:  # the probe runs while the replays after it do
                    probe.launch()
            reps += 20
            torch.cuda.synchronize()
            if probing:
                ghz.append(probe.read())
        end.record()
        end.synchronize()
        t1 = time.time()
        per_call = start.elapsed_time(end) * 1e3 / (reps * 24)
        w = smi.window(t0 + 0.5, t1)
        result["builds"][label] = {"config": str(cfg), "validation": val, "us_per_call": round(per_call, 2),
                                   "calls": reps * 24, "probe_GHz": ghz, **w}
        log(f"{label:58s} {per_call:6.2f} us/call  probe {ghz} GHz, SM {w.get('sm_MHz_median')} MHz (min {w.get('sm_MHz_min')}), "
            f"mem {w.get('mem_MHz_median')} MHz, {w.get('power_W_median')} W (max {w.get('power_W_max')}), "
            f"reasons {w.get('event_reasons')}")
        (out_dir / "wo_power.json").write_text(json.dumps(result, indent=1))
    smi.stop()
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
