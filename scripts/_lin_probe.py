import torch, statistics
from workbench.bench import current_ceilings, time_cuda
from workbench.techniques import nvfp4 as nv
ceil = current_ceilings()
print(torch.cuda.get_device_name(), f"copy {ceil.copy_TBps:.3f} TB/s")
for M, K in ((8192, 7168), (8192, 16384)):
    x = nv.make_inputs(M, K, seed=M + K)
    g = nv.global_scale_from_amax(x.float().abs().amax()).cuda()
    ref = nv.quantize_reference(x, g, "linear")
    bound = ceil.bound_us(bytes=nv.quantize_bytes(M, K))
    runs = {f"v11_{c[0]}x{c[1]}": ("v11", c) for c in nv.QUANT_V11_CONFIGS}
    runs["v5_16x2"] = ("v5", (16, 2, False)); runs["v5_32x2"] = ("v5", (32, 2, False)); runs["v3"] = ("v3", None)
    res = {n: [] for n in runs}
    for n, (k, c) in runs.items():
        assert nv.compare_exact(nv.quantize(x, g, "linear", kernel=k, config=c), ref)["passed"], n
    out = nv.quantize(x, g, "linear")
    for _ in range(5):
        for n, (k, c) in runs.items():
            res[n].append(time_cuda(lambda: nv.quantize(x, g, "linear", out=out, kernel=k, config=c), reps=20, graph=True, inner=5, l2="warm", max_seconds=2.0).median_us)
    print(f"linear {M}x{K} bound {bound:.2f} us (every build bit-exact)")
    for n, s in sorted(res.items(), key=lambda kv: statistics.median(kv[1])):
        print(f"  {n:10s} {statistics.median(s):7.2f} us {100 * bound / statistics.median(s):5.1f}%")
