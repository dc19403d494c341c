"""wo GEMM: CPU checks of the emulations and accuracy study; GPU checks of the fused W4A16 kernel."""

import pytest
import torch

from workbench.runtime import InputError
from workbench.techniques import nvfp4 as nv
from workbench.techniques import wo_gemm as wo


def test_accuracy_study_orders_formats():
    rows = wo.accuracy_study(M=8, N=128, K=512, outlier_scales=(1.0, 30.0))
    by = {(r["outlier_scale"], r["format"]): r for r in rows}
    for s in (1.0, 30.0):
        assert by[(s, "bf16")]["rel_l2"] < by[(s, "fp8_per_tensor")]["rel_l2"] < by[(s, "nvfp4_w4a16")]["rel_l2"]
        assert by[(s, "nvfp4_w4a16")]["rel_l2"] < by[(s, "nvfp4_w4a4")]["rel_l2"]
        assert by[(s, "nvfp4_w4a16")]["cosine"] > 0.99


def test_fp8_block_quant_error_small():
    t = torch.randn(256, 256)
    d = wo.fp8_block_quant_dequant(t, 128, 128)
    assert float((d - t).norm() / t.norm()) < 0.05
    with pytest.raises(InputError):
        wo.fp8_block_quant_dequant(torch.randn(100, 256), 64, 128)


def test_validate_uses_bf16_rounded_reference():
    ref = torch.randn(4, 64)
    assert wo.validate(ref.to(torch.bfloat16), ref)["passed"]
    assert not wo.validate((ref * 1.01).to(torch.bfloat16), ref)["passed"]


def test_bytes_model():
    assert wo.weight_bytes("bf16") == 234_881_024
    assert wo.weight_bytes("nvfp4") == 58_720_256 + 7_340_032


def test_default_configs_are_instantiated():
    import re
    from pathlib import Path

    text = Path(__file__).resolve().parents[1].joinpath("kernels/wo_gemm.cu").read_text()
    inst = set(re.findall(r"@instantiate (.+)", text))
    for c in wo.CONFIGS:
        assert c.expr in inst, c.expr
    for M in (1, 8, 16, 32, 64, 4096):
        assert wo.default_config(M) in wo.CONFIGS


def test_bad_weight_errors():
    x = torch.zeros(2, 32)
    q = nv.quantize_reference(torch.randn(16, 32), "tensor", layout="swizzled")
    with pytest.raises(InputError, match="layout"):
        wo.check_weight(q)
    with pytest.raises(InputError, match="w: expected an NVFP4Tensor"):
        wo.check_weight(x)


# ---------------------------------------------------------------------------------------------- GPU
def _small_problem(M, N=512, K=1024, seed=0):
    w = wo.make_weight(N, K, seed=seed)
    q = nv.quantize(w, "tensor")
    x = wo.make_activations(M, K, seed=seed + 1)
    return x, q, wo.reference(x, nv.dequantize(q, torch.float32))


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", wo.CONFIGS, ids=str)
@pytest.mark.parametrize("M", [1, 5, 8, 13, 32, 50, 64, 100, 130])
def test_gpu_w4a16_matches_fp32_of_dequantized(cfg, M):
    x, q, ref = _small_problem(M)
    for splits in (1, 3):
        out = torch.full((M, q.shape[0]), float("nan"), dtype=torch.bfloat16, device="cuda")
        v = wo.validate(wo.w4a16_gemm(x, q, cfg, splits, out=out), ref)
        assert v["passed"], (cfg, M, splits, v)
    # twice more: the workspace and counters must have been left clean
    for _ in range(2):
        assert wo.validate(wo.w4a16_gemm(x, q, cfg, 3), ref)["passed"]


@pytest.mark.gpu
def test_gpu_w4a16_all_codes_and_scales():
    """Weights built to contain every code with scales across the E4M3 range (subnormal included)."""
    N, K = 256, 1024
    g = torch.Generator().manual_seed(3)
    codes = torch.randint(0, 16, (N, K), dtype=torch.uint8, generator=g)
    sf = torch.randint(1, 0x7f, (N, K // 16), dtype=torch.uint8, generator=g)
    q = nv.NVFP4Tensor(nv.pack_nibbles(codes).cuda(), sf.cuda(), torch.tensor(3.0, device="cuda"), "linear", (N, K))
    x = wo.make_activations(8, K, seed=4)
    ref = wo.reference(x, nv.dequantize(q, torch.float32))
    for cfg in wo.CONFIGS:
        assert wo.validate(wo.w4a16_gemm(x, q, cfg, 2), ref)["passed"], cfg


@pytest.mark.gpu
def test_gpu_w4a16_bad_input():
    x, q, _ = _small_problem(4)
    with pytest.raises(InputError, match="dtype"):
        wo.w4a16_gemm(x.float(), q)
    with pytest.raises(InputError, match="contiguous"):
        wo.w4a16_gemm(torch.empty(1024, 4, dtype=torch.bfloat16, device="cuda").t(), q)
    with pytest.raises(InputError, match="K"):
        wo.w4a16_gemm(x[:, :512].contiguous(), q)
