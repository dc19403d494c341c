"""Inputs and checks shared by the wo GEMM tests (test_wo_gemm.py, test_wo_gemm_v5.py, v7, v8)."""

import torch

from workbench.techniques import nvfp4 as nv
from workbench.techniques import wo_gemm as wo


def small_problem(M, N=512, K=1024, seed=0):
    """x bf16 [M, K], its NVFP4 weight q [N, K] (per-tensor scale) and the fp32 GEMM of the dequantized
    operands (the reference every fused kernel must match within rel-L2 1e-3)."""
    q = nv.quantize(wo.make_weight(N, K, seed=seed), "tensor")
    x = wo.make_activations(M, K, seed=seed + 1)
    return x, q, wo.reference(x, nv.dequantize(q, torch.float32))


def all_codes_weight(N=256, K=1024, seed=3, sf_low=0, edge_rows=False, device="cpu"):
    """An [N, K] NVFP4 weight holding every code, block scales drawn from E4M3 bytes [sf_low, 0x7F)
    (subnormal scales included), global scale 3. edge_rows: row 0 starts with 8 zero-scale blocks, row 1
    walks the smallest scale bytes, row 2 the largest."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 16, (N, K), dtype=torch.uint8, generator=g)
    sf = torch.randint(sf_low, 0x7F, (N, K // 16), dtype=torch.uint8, generator=g)
    if edge_rows:
        sf[0, :8] = 0
        sf[1] = torch.arange(K // 16, dtype=torch.uint8)
        sf[2] = torch.arange(0x7F - K // 16, 0x7F, dtype=torch.uint8)
    return nv.NVFP4Tensor(nv.pack_nibbles(codes).to(device), sf.to(device), torch.tensor(3.0, device=device),
                          "linear", (N, K))


def check_fused(gemm, x, pw, cfg, ref):
    """A fused GEMM wrapper gemm(x, pw, cfg, out=None) matches ref into a NaN-poisoned output, then twice
    more with a fresh output (the workspace and counters must have been left clean)."""
    M, N = ref.shape
    out = torch.full((M, N), float("nan"), dtype=torch.bfloat16, device="cuda")
    v = wo.validate(gemm(x, pw, cfg, out=out), ref)
    assert v["passed"], (cfg, M, v)
    for _ in range(2):
        assert wo.validate(gemm(x, pw, cfg), ref)["passed"], (cfg, M)


def check_fused_shapes(gemm, cfg, ms, shapes):
    """check_fused for every M in ms and (N, K) in shapes, each on a fresh small_problem."""
    for N, K in shapes:
        for M in sorted(set(ms)):
            x, q, ref = small_problem(M, N=N, K=K)
            check_fused(gemm, x, wo.prepare_weight(q), cfg, ref)


def check_all_codes(gemm, cfgs, M):
    """Every config in cfgs on the all-codes weight (256 x 1024, edge rows: zero, smallest and largest scales) with
    M tokens: the output matches the fp32 GEMM of the dequantized operands."""
    q = all_codes_weight(256, 1024, seed=3, edge_rows=True, device="cuda")
    pw = wo.prepare_weight(q)
    x = wo.make_activations(M, 1024, seed=4)
    ref = wo.reference(x, nv.dequantize(q, torch.float32))
    for cfg in cfgs:
        assert wo.validate(gemm(x, pw, cfg), ref)["passed"], cfg


def check_gemm_rejects_bad_input(gemm):
    """A fused GEMM wrapper names the argument it rejects: a non-bf16 x, and a weight that was not prepared."""
    import pytest

    from workbench.runtime import InputError

    q = nv.quantize_reference(torch.randn(256, 512), "tensor")
    with pytest.raises(InputError, match="x"):
        gemm(torch.zeros(4, 512, dtype=torch.float32), wo.prepare_weight(q))
    with pytest.raises(InputError, match="pw"):
        gemm(torch.zeros(4, 512, dtype=torch.bfloat16), q)


def check_pdl_back_to_back(gemm, cfg, M):
    """enable_pdl: 8 back-to-back launches of gemm(x, pw, cfg) on the wo row count (7168 x 2048), each GEMM
    overlapping the previous call's tail (same workspace, same counters), each output exact; then a plain call."""
    x, q, ref = small_problem(M, N=7168, K=2048, seed=5)
    pw = wo.prepare_weight(q)
    outs = [gemm(x, pw, cfg, enable_pdl=True) for _ in range(8)]
    outs.append(gemm(x, pw, cfg))
    for i, o in enumerate(outs):
        v = wo.validate(o, ref)
        assert v["passed"], (cfg, i, v)
