"""GPU checks of the foundation: kernels load and run, PDL launches, timing and ceilings behave."""

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gpu


def test_copy_kernels_bitwise():
    from workbench.techniques import copy as C

    src = C.make_inputs(3 * 2**20 + 48, seed=11)
    for fn in (C.copy, C.copy_v1, C.copy_v2):
        dst = torch.full_like(src, 0xA5)
        fn(src, dst)
        torch.cuda.synchronize()
        assert torch.equal(dst, src), fn.__name__


def test_pdl_launch_matches_plain_launch():
    from workbench.runtime import get_kernel, launch

    src = torch.randint(0, 255, (2**20,), dtype=torch.uint8, device="cuda")
    f = get_kernel("copy", "copy_v2_vec16")
    for pdl in (False, True):
        dst = torch.zeros_like(src)
        launch(f, 64, 256, (src, dst, np.int64(src.numel() // 16)), enable_pdl=pdl)
        torch.cuda.synchronize()
        assert torch.equal(src, dst), f"enable_pdl={pdl}"


def test_copy_rejects_misaligned_gpu_tensor():
    from workbench.runtime import InputError
    from workbench.techniques import copy as C

    src = torch.zeros(1024 + 16, dtype=torch.uint8, device="cuda")[8:8 + 1024]
    with pytest.raises(InputError, match="aligned to 16 bytes"):
        C.copy(src, torch.empty(1024, dtype=torch.uint8, device="cuda"))


def test_timer_orders_work_sizes():
    from workbench.bench import time_cuda

    a = torch.randn(2**22, device="cuda")
    b = torch.randn(2**26, device="cuda")
    ta, tb = time_cuda(lambda: a.mul_(1.0), reps=10), time_cuda(lambda: b.mul_(1.0), reps=10)
    assert ta.p20_us <= ta.median_us <= ta.p80_us
    assert tb.median_us > 4 * ta.median_us
    tg = time_cuda(lambda: a.mul_(1.0), graph=True, inner=10, reps=10)
    assert tg.method["timer"] == "cuda_graph" and tg.median_us > 0


def test_ceilings_are_plausible():
    from workbench.bench import measure_ceilings

    c = measure_ceilings()
    assert 1.0 < c.copy_TBps < 6.0 and 200 < c.bf16_TFLOPs < 1100 and c.fp8_TFLOPs > c.bf16_TFLOPs
