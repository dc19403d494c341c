import torch, time, json, os
print(torch.__version__, torch.cuda.get_device_name())
import cupy, cuda.bindings; print("cupy", cupy.__version__, "cuda.bindings", cuda.bindings.__version__)
try:
    import cuda.core; print("cuda.core", cuda.core.__version__)
except Exception as e: print("no cuda.core", e)
from workbench.runtime import kernels
print("nvrtc", kernels.nvrtc_version(), "arch", kernels.device_arch())
from workbench.techniques import copy as C
src = C.make_inputs(2**26, seed=3); dst = torch.empty_like(src)
C.copy(src, dst); torch.cuda.synchronize(); print("v2 ok", torch.equal(src, dst))
dst.zero_(); C.copy_v1(src, dst); torch.cuda.synchronize(); print("v1 ok", torch.equal(src, dst))
from workbench.runtime.launch import launch
from workbench.runtime import get_kernel
import numpy as np
dst.zero_(); launch(get_kernel("copy","copy_v2_vec16"), 1024, 256, (src, dst, np.int64(src.numel()//16)), enable_pdl=True); torch.cuda.synchronize(); print("pdl ok", torch.equal(src, dst))
from workbench.bench import time_cuda, measure_ceilings
t0=time.time(); c = measure_ceilings(); print(c, time.time()-t0)
from workbench.techniques import REGISTRY
cases = REGISTRY["copy"].run()
for cs in cases: print(cs.name, {k: v.median_us for k,v in cs.variants.items()}, cs.bound_us, cs.validation)
t = time_cuda(lambda: C.copy(src, dst), graph=True, inner=20); print("graph", t)
