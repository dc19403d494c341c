"""wo GEMM v8 (v7's product, warp-specialized): CPU checks of the configs and the compile; GPU checks of
the kernel against the fp32 GEMM of the dequantized operands."""

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
from workbench.techniques import wo_gemm_v8 as v8
from workbench.techniques.wo_gemm_v5 import MAX_DYNAMIC_SMEM

ROOT = Path(__file__).resolve().parents[1]


def test_v8_configs_instantiated_and_fit():
    inst = set(re.findall(r"@instantiate (.+)", ROOT.joinpath("kernels/wo_gemm_v8.cu").read_text()))
    for c in v8.V8_KERNELS:
        assert c.expr in inst and c.smem <= MAX_DYNAMIC_SMEM and 7168 % c.rows == 0, c
    for M in (1, 32, 64):
        assert v8.v8_candidates(M)
    with pytest.raises(InputError, match="M"):
        v8.v8_candidates(65)


def test_v8_compiles_without_spills():
    """The sm_90a compile gate (NVRTC, no GPU): every instantiation, no spills and no stack (the MMA
    warpgroups' 64 accumulators fit only after setmaxnreg)."""
    ck = compile_kernel("wo_gemm_v8")
    names = {low: e for e, low in ck.lowered.items()}
    assert len(ck.resources) == len(v8.V8_KERNELS)
    for low, r in ck.resources.items():
        assert r.spill_stores == 0 and r.spill_loads == 0 and r.stack_frame == 0, (names.get(low, low), r)


def test_v8_bad_input():
    check_gemm_rejects_bad_input(v8.w4a16_gemm_v8)


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", v8.V8_KERNELS + [k.with_work(1, 1) for k in v8.V8_KERNELS], ids=str)
def test_gpu_w4a16_v8_matches_fp32_of_dequantized(cfg):
    # 24 units (one or none per CTA); 224 (1-2 per CTA)
    check_fused_shapes(v8.w4a16_gemm_v8, cfg, (1, 3, 33, 64), [(2 * cfg.rows * 3, 2048), (7168, 2048)])


@pytest.mark.gpu
def test_gpu_w4a16_v8_all_codes_and_scales():
    check_all_codes(v8.w4a16_gemm_v8, v8.V8_KERNELS[:1], 64)


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", v8.V8_KERNELS + [v8.V8_KERNELS[0].with_work(1, 1)], ids=str)
def test_gpu_v8_pdl_back_to_back(cfg):
    """enable_pdl: 8 back-to-back launches on the wo row count, each exact; then a plain call."""
    check_pdl_back_to_back(v8.w4a16_gemm_v8, cfg, 32)
