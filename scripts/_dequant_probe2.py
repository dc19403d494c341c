"""Probe (removed after its run): kernels/dequant_exp.cu (v1's loop, decode varied) against nvfp4_dequantize_v1."""
import statistics

import torch

from workbench.bench import current_ceilings, time_cuda
from workbench.runtime import get_kernel, launch
from workbench.techniques import nvfp4 as nv

ceil = current_ceilings()
print(torch.cuda.get_device_name(), f"copy {ceil.copy_TBps:.3f} TB/s")


def deq(q, out, kern):
    if kern == "v1":
        return nv.dequantize(q, torch.bfloat16, out=out)
    M, K = q.shape
    g = q.global_scale
    if kern[0] == "h":
        launch(get_kernel("dequant_exp", f"nvfp4_dequantize_h<{kern[1:]}>"), nv._blocks_grid(M * K // 8), 256,
               (q.codes, q.scales, g, int(g.dim() == 1), M, K, int(q.layout == "swizzled"), out))
        return out
    launch(get_kernel("dequant_exp", f"nvfp4_dequantize_x<{kern[1:]}>"), nv._blocks_grid(M * K // 16), 256,
           (q.codes, q.scales, g, int(g.dim() == 1), M, K, int(q.layout == "swizzled"), out))
    return out


kerns = ("v1", "x0", "h2", "h3", "x1", "x9")
checks = 0
for (M, K) in ((300, 7184), (257, 7168), (64, 16384), (3, 48)):
    x = nv.make_inputs(M, K, seed=M + K)
    for gs in ("tensor", "row"):
        for layout in ("linear", "swizzled"):
            q = nv.quantize(x, gs, layout)
            ref = nv.dequantize_reference(q).to(torch.bfloat16)
            for kern in kerns[:5]:
                out = deq(q, torch.full((M, K), float("nan"), dtype=torch.bfloat16, device="cuda"), kern)
                assert torch.equal(out, ref), (M, K, gs, layout, kern)
                checks += 1
print(f"{checks} exactness checks passed (x9 writes no values and is not checked)")
M, K = 8192, 16384
x = nv.make_inputs(M, K, seed=7)
bound = ceil.bound_us(bytes=M * K // 2 + M * K // 16 + 2 * M * K)
for layout in ("swizzled", "linear"):
    q = nv.quantize(x, "tensor", layout)
    out = torch.empty((M, K), dtype=torch.bfloat16, device="cuda")
    res = {k: [] for k in kerns}
    for _ in range(5):
        for k in kerns:
            res[k].append(time_cuda(lambda k=k, q=q, out=out: deq(q, out, k), reps=20, graph=True, inner=5, l2="warm",
                                    max_seconds=2.0).median_us)
    print(f"dequantize bf16 {M}x{K} {layout}: bound {bound:.2f} us")
    for k, s in sorted(res.items(), key=lambda kv: statistics.median(kv[1])):
        print(f"  {k:4s} {statistics.median(s):7.2f} us {100 * bound / statistics.median(s):5.1f}%")
