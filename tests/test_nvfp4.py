"""NVFP4 reference (CPU, exhaustive on the format) and kernels (GPU, bit-exact vs the reference)."""

import itertools

import numpy as np
import pytest
import torch

from workbench.runtime import InputError, has_cuda
from workbench.techniques import nvfp4 as nv

GRID = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


# ---------------------------------------------------------------------------------------------- e2m1
def test_e2m1_values_table():
    assert nv.E2M1_VALUES.tolist()[:8] == GRID
    assert nv.E2M1_VALUES.tolist()[8:] == [-v for v in GRID]
    assert torch.signbit(nv.E2M1_VALUES[8])  # code 8 is -0.0


def test_e2m1_all_16_codes_roundtrip():
    codes = torch.arange(16, dtype=torch.uint8)
    vals = nv.e2m1_decode(codes)
    assert torch.equal(nv.e2m1_encode(vals), codes)


def _rne_e2m1_fp64(v: float) -> int:
    """Independent RNE on the grid: nearest value, ties to the even code (mantissa bit 0)."""
    a = min(abs(v), 6.0)
    dists = [abs(a - g) for g in GRID]
    best = min(dists)
    cands = [i for i, d in enumerate(dists) if d == best]
    code = cands[0] if len(cands) == 1 else next(i for i in cands if i % 2 == 0)
    return code | (8 if np.signbit(v) else 0)


def test_e2m1_every_tie_point_and_neighbours():
    vals = []
    for t in nv.TIE_POINTS:
        for d in (0.0, np.nextafter(np.float32(t), np.float32(0)) - t, np.nextafter(np.float32(t), np.float32(9)) - t):
            vals += [t + d, -(t + d)]
    v = torch.tensor(vals, dtype=torch.float32)
    got = nv.e2m1_encode(v).tolist()
    want = [_rne_e2m1_fp64(float(x)) for x in v.tolist()]
    assert got == want
    # the tie table itself
    ties = nv.e2m1_encode(torch.tensor(nv.TIE_POINTS)).tolist()
    assert [GRID[c] for c in ties] == [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0]


def test_e2m1_random_against_fp64_and_saturation():
    g = torch.Generator().manual_seed(0)
    v = (torch.rand(20000, generator=g) - 0.5) * 16
    assert nv.e2m1_encode(v).tolist() == [_rne_e2m1_fp64(float(x)) for x in v.tolist()]
    big = torch.tensor([6.0, 6.5, 100.0, 3e38, -7.0])
    assert nv.e2m1_encode(big).tolist() == [7, 7, 7, 7, 15]


def test_e2m1_sign_of_small_values_kept():
    assert nv.e2m1_encode(torch.tensor([-0.1, -0.0, 0.0, 0.1])).tolist() == [8, 8, 0, 0]


# ---------------------------------------------------------------------------------------------- e4m3
def _all_e4m3_values():
    b = torch.arange(256, dtype=torch.uint8)
    v = nv.e4m3_decode(b)
    finite = torch.isfinite(v) & (b < 128)
    return v[finite].double().unique()


def test_e4m3_encode_rne_against_table():
    table = _all_e4m3_values()  # 0 .. 448, non-negative
    g = torch.Generator().manual_seed(1)
    mids = ((table[1:] + table[:-1]) / 2).float()
    v = torch.cat([torch.rand(5000, generator=g) * 460, mids, table.float(),
                   torch.tensor([2.0**-10, 2.0**-10 * 1.01, 2.0**-11, 1e-30])])
    got = nv.e4m3_decode(nv.e4m3_encode(v)).double()
    vd = v.double().clamp(max=448)
    d = (vd[:, None] - table[None, :]).abs()
    best = d.min(dim=1).values
    for i in range(len(v)):
        cands = table[(d[i] == best[i])]
        if len(cands) == 1:
            assert got[i] == cands[0], (float(v[i]), float(got[i]))
        else:  # tie: the even mantissa
            assert got[i] in cands.tolist()
            byte = int(nv.e4m3_encode(v[i:i + 1])[0])
            assert byte % 2 == 0


def test_e4m3_saturates_instead_of_nan():
    assert nv.e4m3_decode(nv.e4m3_encode(torch.tensor([448.0, 464.0, 1e9]))).tolist() == [448.0] * 3


# ---------------------------------------------------------------------------------------------- layout
def test_pack_low_nibble_first():
    codes = torch.tensor([[1, 2, 3, 4]], dtype=torch.uint8)
    assert nv.pack_nibbles(codes).tolist() == [[0x21, 0x43]]
    assert torch.equal(nv.unpack_nibbles(nv.pack_nibbles(codes)), codes)


@pytest.mark.parametrize("M,KB", [(1, 1), (128, 4), (130, 5), (300, 7), (256, 1024 // 16)])
def test_swizzle_roundtrip_offsets_padding(M, KB):
    g = torch.Generator().manual_seed(M + KB)
    sf = torch.randint(1, 256, (M, KB), dtype=torch.uint8, generator=g)
    sw = nv.swizzle_scales(sf)
    Mp, KBp = -(-M // 128) * 128, -(-KB // 4) * 4
    assert sw.numel() == Mp * KBp == nv.swizzled_size(M, KB * 16)
    assert torch.equal(nv.unswizzle_scales(sw, M, KB * 16), sf)
    m, kb = torch.meshgrid(torch.arange(M), torch.arange(KB), indexing="ij")
    offs = nv.swizzled_sf_offset(m, kb, KBp)
    assert torch.equal(sw[offs.flatten()], sf.flatten())
    mask = torch.ones(Mp * KBp, dtype=torch.bool)
    mask[offs.flatten()] = False
    assert int(sw[mask].count_nonzero()) == 0  # padding is zero


def test_swizzle_formula_spot_values():
    assert nv.swizzled_sf_offset(0, 0, 4) == 0
    assert nv.swizzled_sf_offset(1, 0, 4) == 16
    assert nv.swizzled_sf_offset(32, 0, 4) == 4
    assert nv.swizzled_sf_offset(0, 3, 4) == 3
    assert nv.swizzled_sf_offset(0, 4, 8) == 512
    assert nv.swizzled_sf_offset(128, 0, 8) == 1024


# ---------------------------------------------------------------------------------------------- quantize
def _fp64_quantize(x: torch.Tensor, g: float):
    """Independent scalar implementation of the recipe (numpy fp32 steps) for a few rows."""
    f32 = np.float32
    xs = x.float().numpy()
    M, K = xs.shape
    codes = np.zeros((M, K), np.uint8)
    sfs = np.zeros((M, K // 16), np.uint8)
    g32 = f32(g)
    ginv = f32(1) / g32
    for m in range(M):
        for b in range(K // 16):
            blk = xs[m, 16 * b:16 * b + 16]
            vmax = f32(np.abs(blk).max())
            sf_f = min(g32 * (vmax / f32(6)), f32(448))
            sf_b = int(nv.e4m3_encode(torch.tensor([sf_f]))[0])
            sf_v = f32(nv.e4m3_decode(torch.tensor([sf_b], dtype=torch.uint8))[0])
            q = f32(1) / (sf_v * ginv) if sf_v != 0 else f32(0)
            sfs[m, b] = sf_b
            for j in range(16):
                codes[m, 16 * b + j] = _rne_e2m1_fp64(float(f32(blk[j]) * q))
    return codes, sfs


def test_quantize_matches_scalar_recipe():
    x = nv.make_inputs(3, 64, seed=3, device="cpu")
    q = nv.quantize_reference(x, "tensor")
    codes, sfs = _fp64_quantize(x, float(q.global_scale))
    assert torch.equal(nv.unpack_nibbles(q.codes), torch.from_numpy(codes))
    assert torch.equal(q.scales, torch.from_numpy(sfs))


def test_quantize_ties_exact():
    x = nv.make_tie_inputs(8, 256, seed=4, device="cpu")
    q = nv.quantize_reference(x, torch.tensor(1.0))
    codes = nv.unpack_nibbles(q.codes)
    want = torch.tensor([_rne_e2m1_fp64(v) for v in (x.float() / x.float().view(8, 16, 16).abs().amax(-1)
                                                      .repeat_interleave(16, 1) * 6).flatten().tolist()])
    assert torch.equal(codes.flatten().long(), want)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_quantize_error_and_dequant(dtype):
    x = torch.randn(64, 7168 // 8, generator=torch.Generator().manual_seed(5)).to(dtype)
    d = nv.reference(x, "row")
    rel = float((d - x.float()).norm() / x.float().norm())
    assert 0.07 < rel < 0.12  # techniques.md: ~0.095 on Gaussian rows


def test_row_scale_matches_per_row_tensor_scale():
    x = nv.make_inputs(5, 96, seed=6, device="cpu")
    qr = nv.quantize_reference(x, "row")
    assert qr.global_scale.shape == (5,)
    for m in range(5):
        q1 = nv.quantize_reference(x[m:m + 1], "tensor")
        assert torch.equal(q1.codes, qr.codes[m:m + 1]) and torch.equal(q1.scales, qr.scales[m:m + 1])


def test_amax_zero_and_zero_blocks():
    x = torch.zeros(2, 32)
    x[1, 16:] = torch.linspace(-1, 1, 16)
    q = nv.quantize_reference(x, "row")
    assert float(q.global_scale[0]) == pytest.approx(2688 / 1e-12, rel=1e-6)
    assert q.scales[0].tolist() == [0, 0] and q.scales[1, 0] == 0 and q.scales[1, 1] != 0
    assert int(nv.unpack_nibbles(q.codes)[0].max()) == 0
    assert torch.equal(nv.dequantize_reference(q)[0], torch.zeros(32))
    assert torch.all(nv.dequantize_reference(q)[1, :16] == 0)


def test_denormal_range_blocks_flush_or_lose_precision():
    # per-tensor scale set by one large value; a block 1e-6 of it gets a subnormal or zero scale
    x = torch.zeros(1, 48)
    x[0, :16] = 1000.0
    x[0, 16:32] = torch.linspace(0.01, 0.02, 16)   # 1e-5 of amax: subnormal E4M3 scale
    x[0, 32:] = torch.linspace(1e-5, 2e-5, 16)     # 1e-8 of amax: scale rounds to 0 -> flushed
    q = nv.quantize_reference(x, "tensor")
    sf = nv.e4m3_decode(q.scales[0])
    assert 0 < float(sf[1]) < 2.0**-6  # subnormal
    assert float(sf[2]) == 0.0
    d = nv.dequantize_reference(q)[0]
    assert torch.all(d[32:] == 0)
    assert float((d[16:32] - x[0, 16:32]).abs().max()) < 0.01


def test_nonfinite_input_rejected():
    for bad in (float("nan"), float("inf"), float("-inf")):
        x = torch.ones(2, 16)
        x[1, 3] = bad
        with pytest.raises(InputError, match="x: expected finite"):
            nv.quantize_reference(x)


def test_given_global_scale_and_saturation():
    x = torch.full((1, 16), 10.0)
    q = nv.quantize_reference(x, torch.tensor(1000.0))  # g * vmax / 6 = 1667 > 448: saturate
    assert nv.e4m3_decode(q.scales).item() == 448.0
    assert nv.unpack_nibbles(q.codes).unique().tolist() == [7]
    with pytest.raises(InputError, match="global_scale"):
        nv.quantize_reference(x, torch.tensor(-1.0))
    with pytest.raises(InputError, match="global_scale"):
        nv.quantize_reference(x, torch.ones(3))


def test_bad_input_errors():
    with pytest.raises(InputError, match="K"):
        nv.quantize_reference(torch.ones(2, 24))
    with pytest.raises(InputError, match="dtype"):
        nv.quantize_reference(torch.ones(2, 16, dtype=torch.int32))
    with pytest.raises(InputError, match="layout"):
        nv.quantize_reference(torch.ones(2, 16), layout="tiled")
    with pytest.raises(InputError, match="global_scale"):
        nv.quantize_reference(torch.ones(2, 16), global_scale="block")


def test_swizzled_layout_same_bytes():
    x = nv.make_inputs(130, 80, seed=8, device="cpu")
    ql, qs = nv.quantize_reference(x, "row", "linear"), nv.quantize_reference(x, "row", "swizzled")
    assert torch.equal(qs.linear_scales(), ql.scales) and torch.equal(qs.codes, ql.codes)
    assert torch.equal(nv.dequantize_reference(qs), nv.dequantize_reference(ql))


def test_kernel_fast_decode_bit_trick():
    """The wo kernel's FAST decode: bf16 bits (n & 7) << 6 | sign << 15 equal e2m1 * 2^-126 for all codes,
    and times float(sf) * 2^63 the product is exact in bf16 for every E4M3 scale."""
    codes = torch.arange(16, dtype=torch.int32)
    bits = ((codes & 7) << 6) | ((codes & 8) << 12)
    as_f32 = (bits << 16).to(torch.int32).view(torch.float32)  # bf16 -> fp32 by bits
    assert torch.equal(as_f32.double() * 2.0**126, nv.E2M1_VALUES.double())
    sf = _all_e4m3_values()
    prod = nv.E2M1_VALUES.double()[:, None] * sf[None, :] * 2.0**63
    assert torch.equal(prod.float().to(torch.bfloat16).double(), prod)  # exact in bf16


def _encode_v3_emulated(v: np.ndarray) -> np.ndarray:
    """nvfp4_quantize_v3's fp32-pipe encoder in numpy float32 (IEEE RNE, like the GPU without FTZ)."""
    f32 = np.float32
    v = v.astype(f32)
    a = np.minimum(np.abs(v), f32(6))
    m = (np.maximum(a, f32(1)).view(np.uint32) & np.uint32(0x7F800000)).view(f32) * f32(2.0**22)
    r = (a + m) - m
    code = ((r * f32(2.0**-126)).view(np.uint32) >> 22).astype(np.uint8)
    return code | (np.signbit(v).astype(np.uint8) << 3)


def test_quantize_v3_float_encoder_matches_tie_table():
    """min(|v|, 6) + 2^(max(e, 0) + 22) - same = RNE on the E2M1 grid; bits(r * 2^-126) >> 22 = code."""
    vals = []
    for t in list(nv.TIE_POINTS) + GRID + [7.0, 1e30]:
        t = np.float32(t)
        vals += [t, np.nextafter(t, np.float32(0)), np.nextafter(t, np.float32(10))]
    rng = np.random.default_rng(0)
    v = np.concatenate([np.array(vals, np.float32), -np.array(vals, np.float32),
                        ((rng.random(200_000) - 0.5) * 16).astype(np.float32),
                        (rng.standard_normal(100_000) * 1e-3).astype(np.float32)])
    assert np.array_equal(_encode_v3_emulated(v), nv.e2m1_encode(torch.from_numpy(v)).numpy())


def test_quantize_v3_sign_gather():
    """The two PRMTs + masks of encode8_v3 put the sign of element e (bf16 pair e//2, half e%2) at 4e+3."""
    def prmt(a, b, sel):
        by = [(a >> (8 * i)) & 0xFF for i in range(4)] + [(b >> (8 * i)) & 0xFF for i in range(4)]
        return sum(by[(sel >> (4 * i)) & 7] << (8 * i) for i in range(4))

    rng = np.random.default_rng(1)
    for _ in range(500):
        w = [int(z) for z in rng.integers(0, 2**32, 4)]
        P, Q = prmt(w[0], w[1], 0x7351), prmt(w[2], w[3], 0x7351)
        got = (((P >> 4) & 0x0808) | ((P >> 16) & 0x8080) | ((Q << 12) & 0x08080000) | (Q & 0x80800000)) & 0xFFFFFFFF
        want = sum(((w[e // 2] >> (15 if e % 2 == 0 else 31)) & 1) << (4 * e + 3) for e in range(8))
        assert got == want


# ---------------------------------------------------------------------------------------------- GPU
GPU_SHAPES = [(1, 16), (3, 48), (7, 80), (130, 208), (300, 1040), (257, 7168), (64, 16384)]


@pytest.mark.gpu
@pytest.mark.parametrize("M,K", GPU_SHAPES)
@pytest.mark.parametrize("mode,layout", list(itertools.product(["tensor", "row", "given"], ["linear", "swizzled"])))
@pytest.mark.parametrize("kernel", ["v1", "v2", "v3", "v5", "v11"])
def test_gpu_quantize_bit_exact(M, K, mode, layout, kernel):
    if kernel == "v11" and mode == "row":
        pytest.skip("v11 takes a per-tensor scale (test_gpu_quantize_v11_rejects_per_row_scales)")
    for seed, maker in enumerate((nv.make_inputs, nv.make_tie_inputs)):
        x = maker(M, K, seed=seed + M, device="cuda")
        if maker is nv.make_tie_inputs and mode != "given":
            continue
        gs = torch.tensor(1.0, device="cuda") if maker is nv.make_tie_inputs else (
            nv.global_scale_from_amax(x.float().abs().amax()).cuda() if mode == "given" else mode)
        q = nv.quantize(x, gs, layout, kernel=kernel)
        r = nv.quantize_reference(x, gs, layout)
        res = nv.compare_exact(q, r)
        assert res["passed"], res


@pytest.mark.gpu
@pytest.mark.parametrize("M,K", [(130, 208), (300, 1040), (257, 7168)])
@pytest.mark.parametrize("config", nv.QUANT_V5_CONFIGS)
@pytest.mark.parametrize("per_row", [False, True])
def test_gpu_quantize_v5_configs_write_the_padding(M, K, config, per_row):
    """Every v5 config is bit-exact, and it writes the swizzled padding (zeros) itself: the output
    buffers start filled with 0xAB."""
    x = nv.make_inputs(M, K, seed=M + K, device="cuda")
    amax = x.float().abs().amax(dim=1) if per_row else x.float().abs().amax()
    gs = nv.global_scale_from_amax(amax).cuda()
    for layout in ("linear", "swizzled"):
        r = nv.quantize_reference(x, gs, layout)
        out = nv.NVFP4Tensor(codes=torch.full_like(r.codes, 0xAB, device="cuda"),
                             scales=torch.full_like(r.scales, 0xAB, device="cuda"), global_scale=gs,
                             layout=layout, shape=(M, K))
        q = nv.quantize(x, gs, layout, out=out, kernel="v5", config=config)
        res = nv.compare_exact(q, r)
        assert res["passed"], (layout, res)


def test_quant_v5_default_per_gpu_model():
    """The quantizer's kernel per GPU model and layout and v5's config (each measured fastest on that card), a
    compiled config for every model, and the H100's choices for a model the tables do not name."""
    assert nv.quant_v5_default("NVIDIA H200") == (16, 2, False)
    assert nv.quant_v5_default("NVIDIA H100 80GB HBM3") == (8, 4, False) == nv.QUANT_V5_DEFAULT
    assert nv.quant_v5_default("NVIDIA GeForce RTX 4090") == nv.QUANT_V5_DEFAULT
    assert all(cfg in nv.QUANT_V5_CONFIGS for cfg in nv.QUANT_V5_BY_MODEL.values())
    assert set(nv.QUANT_V11_DEFAULTS) == {"linear", "swizzled"}
    assert all(cfg in nv.QUANT_V11_CONFIGS for cfg in nv.QUANT_V11_DEFAULTS.values())
    assert nv.quant_swizzled_kernel("NVIDIA H200") == nv.quant_linear_kernel("NVIDIA H200") == "v11"
    assert nv.quant_swizzled_kernel("NVIDIA H100 80GB HBM3") == nv.quant_swizzled_kernel("other GPU") == "v5"
    assert nv.quant_linear_kernel("NVIDIA H100 80GB HBM3") == nv.quant_linear_kernel("other GPU") == "v1"


@pytest.mark.gpu
@pytest.mark.parametrize("M,K", [(256, 2048), (128, 4096), (130, 208), (300, 7184), (257, 7168)])
@pytest.mark.parametrize("config", nv.QUANT_V11_CONFIGS)
def test_gpu_quantize_v11_configs(M, K, config):
    """Every v11 config is bit-exact on full tiles (the lean body) and edge tiles, for random inputs (blocks with
    E4M3-subnormal scales among them), every tie point, a scale 16x too large (saturated blocks: the packed clamp
    does the work) and a scale past 2^100 (the general body); it writes the swizzled padding itself (buffers start
    filled with 0xAB)."""
    rnd = nv.make_inputs(M, K, seed=M + K, device="cuda")
    g_rnd = nv.global_scale_from_amax(rnd.float().abs().amax()).cuda()
    tiny = (rnd.float() * 1e-33).to(torch.bfloat16)
    cases = {"random": (rnd, g_rnd), "ties": (nv.make_tie_inputs(M, K, seed=3, device="cuda"),
                                              torch.tensor(1.0, device="cuda")),
             "saturating": (rnd, g_rnd * 16.0), "huge_scale": (tiny, torch.tensor(2.0 ** 110, device="cuda"))}
    for name, (x, gs) in cases.items():
        for layout in ("linear", "swizzled"):
            r = nv.quantize_reference(x, gs, layout)
            out = nv.NVFP4Tensor(codes=torch.full_like(r.codes, 0xAB, device="cuda"),
                                 scales=torch.full_like(r.scales, 0xAB, device="cuda"), global_scale=gs,
                                 layout=layout, shape=(M, K))
            res = nv.compare_exact(nv.quantize(x, gs, layout, out=out, kernel="v11", config=config), r)
            assert res["passed"], (name, layout, res)


@pytest.mark.gpu
def test_gpu_quantize_v11_rejects_per_row_scales_and_bad_config():
    x = nv.make_inputs(128, 256, seed=1, device="cuda")
    g_row = nv.global_scale_from_amax(x.float().abs().amax(dim=1)).cuda()
    with pytest.raises(InputError, match="per-tensor"):
        nv.quantize(x, g_row, "swizzled", kernel="v11")
    with pytest.raises(InputError, match="per-tensor"):
        nv.quantize(x, "row", "swizzled", kernel="v11")
    with pytest.raises(InputError, match="config"):
        nv.quantize(x, "tensor", "swizzled", kernel="v11", config=(16, 2, False))
    # the default kernel falls back to v5 for a per-row scale, and stays exact
    for gs in (g_row, "row"):
        assert nv.compare_exact(nv.quantize(x, gs, "swizzled"), nv.quantize_reference(x, gs, "swizzled"))["passed"]


@pytest.mark.gpu
def test_gpu_quantize_v5_rejects_bad_config_and_misaligned_out():
    x = nv.make_inputs(128, 256, seed=1, device="cuda")
    gs = nv.global_scale_from_amax(x.float().abs().amax()).cuda()
    with pytest.raises(InputError, match="config"):
        nv.quantize(x, gs, "swizzled", kernel="v5", config=(3, 3))
    with pytest.raises(InputError, match="config"):
        nv.quantize(x, gs, "swizzled", kernel="v3", config=(16, 4, True))
    good = nv.quantize(x, gs, "swizzled")
    buf = torch.zeros(good.scales.numel() + 16, dtype=torch.uint8, device="cuda")
    out = nv.NVFP4Tensor(codes=good.codes.clone(), scales=buf[1:1 + good.scales.numel()], global_scale=gs,
                         layout="swizzled", shape=(128, 256))
    with pytest.raises(InputError, match="out.scales"):
        nv.quantize(x, gs, "swizzled", out=out)


@pytest.mark.gpu
def test_gpu_quantize_extremes_and_zero_rows():
    x = nv.make_inputs(40, 96, seed=9, device="cpu").float()
    x[0] = 0
    x[1, :16] = 3e38 / 1e5
    x[2] = x[2] * 1e-30
    x = x.to(torch.bfloat16).cuda()
    for gs in ("tensor", "row"):
        q, r = nv.quantize(x, gs, "swizzled"), nv.quantize_reference(x, gs, "swizzled")
        assert nv.compare_exact(q, r)["passed"]


@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["linear", "swizzled"])
@pytest.mark.parametrize("kernel", [None, "v1", "v2"])
@pytest.mark.parametrize("M,K", [(130, 208), (3, 48), (257, 7168), (300, 7184)])
def test_gpu_dequantize_exact(layout, kernel, M, K):
    """Every dequantize kernel equals the reference bit for bit (fp32, and bf16 rounded to nearest even) for
    per-row and per-tensor scales and every tie point, and writes every element (outputs start as NaN)."""
    x = nv.make_inputs(M, K, seed=10 + M, device="cuda")
    cases = [nv.quantize(x, "row", layout), nv.quantize(x, "tensor", layout),
             nv.quantize(nv.make_tie_inputs(M, K, seed=4, device="cuda"), torch.tensor(1.0, device="cuda"), layout)]
    for q in cases:
        ref = nv.dequantize_reference(q)
        for dtype in (torch.float32, torch.bfloat16):
            out = torch.full((M, K), float("nan"), dtype=dtype, device="cuda")
            assert torch.equal(nv.dequantize(q, dtype, out=out, kernel=kernel), ref.to(dtype)), (dtype, kernel)


def test_dequant_kernel_per_gpu_model():
    assert nv.dequant_kernel("NVIDIA H200") == "v2"
    assert nv.dequant_kernel("NVIDIA H100 80GB HBM3") == nv.dequant_kernel("other GPU") == nv.DEQUANT_DEFAULT == "v1"


@pytest.mark.gpu
def test_gpu_dequantize_rejects_unknown_kernel():
    q = nv.quantize(nv.make_inputs(16, 32, seed=1, device="cuda"), "tensor")
    with pytest.raises(InputError, match="kernel"):
        nv.dequantize(q, kernel="v3")


@pytest.mark.gpu
def test_gpu_quantize_bad_input():
    with pytest.raises(InputError, match="dtype"):
        nv.quantize(torch.ones(2, 16, device="cuda"))
    with pytest.raises(InputError, match="contiguous"):
        nv.quantize(torch.ones(32, 16, device="cuda", dtype=torch.bfloat16).t())
    with pytest.raises(InputError, match="K"):
        nv.quantize(torch.ones(2, 24, device="cuda", dtype=torch.bfloat16))


@pytest.mark.skipif(has_cuda(), reason="CPU-only check")
def test_kernels_compile_for_sm90a():
    from workbench.runtime import compile_kernel

    for name in ("nvfp4", "wo_gemm"):
        c = compile_kernel(name)
        for r in c.resources.values():
            assert not r.spills, (name, r)
