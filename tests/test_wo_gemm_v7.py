"""wo GEMM v7 (the weight as the wgmma B operand, decoded into shared memory): CPU checks of the configs
and the compile; GPU checks of the kernel against the fp32 GEMM of the dequantized operands."""

import re
from pathlib import Path

import pytest
from wo_cases import (
    check_all_codes,
    check_fused_shapes,
    check_gemm_rejects_bad_input,
    check_pdl_back_to_back,
)

from workbench.runtime import InputError, compile_kernel
from workbench.techniques import wo_gemm_v7 as v7

ROOT = Path(__file__).resolve().parents[1]


def test_v7_configs_instantiated_and_fit():
    inst = set(re.findall(r"@instantiate (.+)", ROOT.joinpath("kernels/wo_gemm_v7.cu").read_text()))
    for c in v7.V7_KERNELS:
        assert c.expr in inst, c.expr
        assert c.smem <= v7.MAX_DYNAMIC_SMEM, (c, c.smem)
        assert 7168 % c.rows == 0
    for M in (1, 16, 32, 33, 64):
        cands = v7.v7_candidates(M)
        assert cands and all(c.tokp >= M for c in cands)
        assert any(c.grab for c in cands) and any(not c.grab for c in cands)


def test_v7_compiles_without_spills():
    """The sm_90a compile gate (NVRTC, no GPU): every instantiation, no register spills."""
    ck = compile_kernel("wo_gemm_v7")
    names = {low: e for e, low in ck.lowered.items()}
    assert len(ck.resources) >= len(v7.V7_KERNELS)
    for low, r in ck.resources.items():
        # no stack either: an A register set indexed at run time would live in local memory, and the
        # registers an in-flight wgmma reads could be reused before it retires
        assert r.spill_stores == 0 and r.spill_loads == 0 and r.stack_frame == 0, (names.get(low, low), r)


def test_v7_bad_input():
    with pytest.raises(InputError, match="M"):
        v7.v7_tokp_for(65)
    check_gemm_rejects_bad_input(v7.w4a16_gemm_v7)


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", v7.V7_KERNELS + [k.with_work(1, 1) for k in v7.V7_KERNELS], ids=str)
def test_gpu_w4a16_v7_matches_fp32_of_dequantized(cfg):
    # several row groups; 132 CTAs share 24..96 units: uneven stream-K shares
    check_fused_shapes(v7.w4a16_gemm_v7, cfg, (1, 3, cfg.tokp // 2 + 1, cfg.tokp), [(2 * cfg.rows * 3, 2048)])


@pytest.mark.gpu
def test_gpu_w4a16_v7_all_codes_and_scales():
    check_all_codes(v7.w4a16_gemm_v7, [c for c in v7.V7_KERNELS if c.tokp >= 32], 32)


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", v7.V7_KERNELS + [v7.V7_KERNELS[0].with_work(1, 1)], ids=str)
def test_gpu_v7_pdl_back_to_back(cfg):
    """enable_pdl: 8 back-to-back launches on the wo row count, each exact; then a plain call."""
    check_pdl_back_to_back(v7.w4a16_gemm_v7, cfg, min(cfg.tokp, 32))
