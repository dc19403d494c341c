"""Copy-kernel launch sweep on a GPU: every version and grid, validated, timed twice (run-to-run spread)."""

import numpy as np
import torch

from workbench.bench import current_ceilings, time_cuda
from workbench.runtime import get_kernel, launch

n = 2**30
src = torch.randint(0, 256, (n,), dtype=torch.uint8, device="cuda")
dst = torch.empty_like(src)
nv = n // 16
sms = torch.cuda.get_device_properties(0).multi_processor_count
ceil = current_ceilings()
bound = ceil.bound_us(bytes=2 * n)
configs = [("torch", None, None)]
for mult in (2, 4, 8, 16, 32):
    configs.append(("copy_v2_vec16", sms * mult, f"grid {mult}x SMs"))
configs.append(("copy_v3_vec16_tiles", (nv + 1023) // 1024, "full grid"))
print(f"bound {bound:.1f} us ({ceil})")
for rep in range(2):
    for fn_name, grid, label in configs:
        if fn_name == "torch":
            f = lambda: dst.copy_(src)  # noqa: E731
        else:
            k = get_kernel("copy", fn_name)
            f = lambda k=k, grid=grid: launch(k, grid, 256, (src, dst, np.int64(nv)))  # noqa: E731
        dst.fill_(0xA5)
        f()
        torch.cuda.synchronize()
        assert torch.equal(dst, src), fn_name
        t = time_cuda(f, reps=30, l2="warm")
        print(f"rep{rep} {fn_name:22s} {str(label):16s} {t}  {100 * bound / t.median_us:5.1f}% of bound")
