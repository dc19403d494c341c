"""Probe (removed after its run): nvfp4_dequantize_v1 against v2<BPT> on this GPU, bit-exact first, then timed."""
import statistics

import torch

from workbench.bench import current_ceilings, time_cuda
from workbench.runtime import get_kernel, launch
from workbench.techniques import nvfp4 as nv

ceil = current_ceilings()
print(torch.cuda.get_device_name(), f"copy {ceil.copy_TBps:.3f} TB/s")


def deq(q, dtype, out, kern):
    M, K = q.shape
    g = q.global_scale
    args = (q.codes, q.scales, g, int(g.dim() == 1), M, K, int(q.layout == "swizzled"), out, int(dtype == torch.float32))
    if kern == "v1":
        launch(get_kernel("nvfp4", "nvfp4_dequantize_v1"), nv._blocks_grid(M * K // 16), 256, args)
    else:
        bpt = int(kern[3:])
        chunks = -(-(K // 16) // (256 * bpt))
        launch(get_kernel("nvfp4", f"nvfp4_dequantize_v2<{bpt}>"), M * chunks, 256, args + (chunks,))
    return out


kerns = ("v1", "v2_2", "v2_4")
checks = 0
for (M, K) in ((300, 7184), (257, 7168), (64, 16384), (3, 48)):
    x = nv.make_inputs(M, K, seed=M + K)
    for gs in ("tensor", "row"):
        for layout in ("linear", "swizzled"):
            q = nv.quantize(x, gs, layout)
            ref = nv.dequantize_reference(q)
            for kern in kerns:
                for dt in (torch.float32, torch.bfloat16):
                    out = deq(q, dt, torch.full((M, K), float("nan"), dtype=dt, device="cuda"), kern)
                    assert torch.equal(out, ref.to(dt)), (M, K, gs, layout, kern, dt)
                    checks += 1
t = nv.make_tie_inputs(256, 2048, seed=3)
q = nv.quantize(t, torch.tensor(1.0, device="cuda"), "swizzled")
for kern in kerns:
    assert torch.equal(deq(q, torch.float32, torch.empty((256, 2048), device="cuda"), kern), nv.dequantize_reference(q))
    checks += 1
print(f"{checks} exactness checks passed")
M, K = 8192, 16384
x = nv.make_inputs(M, K, seed=7)
bound = ceil.bound_us(bytes=M * K // 2 + M * K // 16 + 2 * M * K)
for layout in ("swizzled", "linear"):
    q = nv.quantize(x, "tensor", layout)
    out = torch.empty((M, K), dtype=torch.bfloat16, device="cuda")
    res = {k: [] for k in kerns}
    for _ in range(5):
        for k in kerns:
            res[k].append(time_cuda(lambda k=k, q=q, out=out: deq(q, torch.bfloat16, out, k), reps=20, graph=True, inner=5, l2="warm",
                                    max_seconds=2.0).median_us)
    print(f"dequantize bf16 {M}x{K} {layout}: bound {bound:.2f} us")
    for k, s in sorted(res.items(), key=lambda kv: statistics.median(kv[1])):
        print(f"  {k:6s} {statistics.median(s):7.2f} us {100 * bound / statistics.median(s):5.1f}%")
