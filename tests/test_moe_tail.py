"""MoE tail fusions: the references against fp64 and exact layouts on CPU; the kernels on a GPU."""

import pytest
import torch

from workbench.runtime import InputError
from workbench.techniques import moe_tail as M
from workbench.techniques import nvfp4


# ---- reduce: references and the error metric (CPU) ------------------------------------------------
@pytest.fixture(scope="module")
def small():
    return M.make_reduce_inputs(7, 256, seed=3, device="cpu")


def test_reference_is_fp64_sum_rounded_once(small):
    y, w, s = small["y"], small["w"], small["shared"]
    want = (s.double() + (y.double() * w.double()[..., None]).sum(1)).float().to(torch.bfloat16)
    got = M.reference(y, w, s)
    assert got.dtype == torch.bfloat16 and torch.equal(got.view(torch.int16), want.view(torch.int16))


def test_inputs_are_random_and_realistic(small):
    y, w = small["y"], small["w"]
    assert (y != 0).float().mean() > 0.99
    assert torch.allclose(w.sum(1), torch.full((7,), M.R1.routed_scaling), rtol=1e-5)
    assert small["yq"].global_scale.shape == (7 * 8,) and small["yq"].layout == "linear"


def test_fp32_sum_with_one_rounding_is_within_one_ulp(small):
    """The kernel's arithmetic emulated on CPU (fp32 accumulation, one bf16 rounding) passes the exact rule."""
    y, w, s = small["y"], small["w"], small["shared"]
    ref64, mag = M.reduce_reference_fp64(y, w, s)
    acc = s.float()
    for k in range(y.shape[1]):
        acc = acc + w[:, k, None] * y[:, k].float()
    v = M.validate_reduce(acc.to(torch.bfloat16), ref64, mag, exact=True)
    assert v["passed"] and v["max_ulp"] <= 1.0


def test_eager_bf16_products_pass_only_the_loose_rule(small):
    y, w, s = small["y"], small["w"], small["shared"]
    ref64, mag = M.reduce_reference_fp64(y, w, s)
    v = M.validate_reduce(M.reduce_eager(y, w, s), ref64, mag, exact=False)
    assert v["passed"] and v["rel_l2"] < 1e-2


def test_error_metric_counts_ulps(small):
    y, w, s = small["y"], small["w"], small["shared"]
    ref64, mag = M.reduce_reference_fp64(y, w, s)
    out = M.reference(y, w, s)
    assert M.reduce_error(out, ref64, mag)["max_ulp"] == 0.0
    bad = out.clone()
    i = int(ref64.abs().flatten().argmax())  # a large element: the floor does not apply
    bad.view(-1).view(torch.int16)[i] += 2  # two ulps away
    assert M.reduce_error(bad, ref64, mag)["max_ulp"] == pytest.approx(2.0)
    assert not M.validate_reduce(bad, ref64, mag, exact=True)["passed"]
    nan = out.clone()
    nan[0, 0] = float("nan")
    assert not M.validate_reduce(nan, ref64, mag, exact=False)["passed"]


def test_f16_pair_decode_trick_gives_e2m1_times_2_pow_minus_14():
    """The bit trick of kernels/moe_tail.cu e2m1_pair_to_f16x2, emulated: all 256 code pairs."""
    x = torch.arange(256, dtype=torch.int32)  # nibble 0 = low code; put the high code in nibble 4
    word = (x & 0xF) | ((x >> 4) << 16)
    h2 = ((word & 0x00070007) << 9) | ((word & 0x00080008) << 12)
    lo = (h2 & 0xFFFF).to(torch.int16).view(torch.float16).float() * 2.0**14
    hi = ((h2 >> 16) & 0xFFFF).to(torch.int16).view(torch.float16).float() * 2.0**14
    assert torch.equal(lo, nvfp4.E2M1_VALUES[x & 0xF]) and torch.equal(hi, nvfp4.E2M1_VALUES[x >> 4])
    assert torch.equal(torch.signbit(lo), torch.signbit(nvfp4.E2M1_VALUES[x & 0xF]))


def test_reduce_bytes_match_the_napkin_math():
    b = {k: sum(x for _, x in v) for k, v in M.reduce_bytes(256).items()}
    assert b["optimized"] == 256 * 8 * 7168 * 2 + 2 * 256 * 7168 * 2 + 256 * 8 * 4
    assert b["eager"] > 2.5 * b["optimized"]
    assert b["optimized_nvfp4"] < 0.45 * b["optimized"] and b["dequant_then_reduce"] > b["optimized"]


def test_reduce_bad_input_is_named(small):
    y, w, s = small["y"], small["w"], small["shared"]
    with pytest.raises(InputError, match=r"w: expected shape \[7, 8\]"):
        M.reduce_optimized(y, w[:, :4], s)
    with pytest.raises(InputError, match="top-k"):
        M.reduce_optimized(y[:, :3], w[:, :3].contiguous(), s)
    q = small["yq"]
    odd = nvfp4.NVFP4Tensor(q.codes[:, :20], q.scales[:, :2], q.global_scale, "linear", (56, 40))
    with pytest.raises(InputError, match=r"H \(yq.shape\[1\]\): expected a multiple of 16, got 40"):
        M.reduce_optimized_nvfp4(odd, w, s)
    with pytest.raises(InputError, match="multiple of 16"):
        M.make_reduce_inputs(2, 40, device="cpu")


# ---- expand: layout and the unfused baseline (CPU) --------------------------------------------------
def test_regions_are_aligned_disjoint_and_fit_the_buffer():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        E = int(torch.randint(1, 40, (1,), generator=g))
        counts = torch.randint(0, 300, (E,), generator=g)
        counts[torch.rand(E, generator=g) < 0.3] = 0  # experts with no rows
        off = [0] + counts.cumsum(0).tolist()
        st = M.region_starts(off)
        assert all(s % 128 == 0 for s in st)
        for e in range(E):
            assert st[e] + M._pad(int(counts[e]), 128) <= st[e + 1]
        assert st[-1] <= M.scale_buffer_rows(off[-1], E)


@pytest.mark.parametrize("T,H,E,K", [(50, 256, 16, 8), (3, 64, 8, 8), (130, 192, 5, 2)])
def test_expand_reference_layout(T, H, E, K):
    inp = M.make_expand_inputs(T, H, E, top_k=K, seed=T, device="cpu")
    r = inp["routing"]
    ref = M.expand_reference(inp["codes"], inp["scales"], r)
    src = r.permuted_src.long()
    assert torch.equal(ref["codes"], inp["codes"][src])
    off, st = r.expert_offsets.tolist(), M.region_starts(r.expert_offsets.tolist())
    kbp = M._pad(H // 16, 4)
    for e in range(E):
        c = off[e + 1] - off[e]
        if c == 0:
            continue
        n = M._pad(c, 128)
        region = ref["scales"][st[e] * kbp:(st[e] + n) * kbp]
        lin = nvfp4.unswizzle_scales(region, n, H)
        assert torch.equal(lin[:c], inp["scales"][src[off[e]:off[e + 1]]])
        assert not lin[c:].any()  # padding rows are zero
        # spot-check the closed-form offset of the first row's first scale
        assert region[nvfp4.swizzled_sf_offset(0, 0, kbp)] == inp["scales"][src[off[e]], 0]
    assert not ref["moe_out"].any() and ref["moe_out"].shape == (T, H)


def test_expand_unfused_matches_reference_on_cpu():
    inp = M.make_expand_inputs(77, 256, 12, seed=5, device="cpu")
    ref = M.expand_reference(inp["codes"], inp["scales"], inp["routing"])
    out = M.make_expand_outputs(inp)
    v = M.validate_expand(M.expand_unfused(inp, out), ref)
    assert v["passed"], v


def test_expand_validation_catches_unwritten_padding():
    inp = M.make_expand_inputs(20, 256, 4, top_k=2, seed=6, device="cpu")
    ref = M.expand_reference(inp["codes"], inp["scales"], inp["routing"])
    out = M.expand_unfused(inp, M.make_expand_outputs(inp))
    kbp = 16
    pad_row = M.region_starts(inp["routing"].expert_offsets.tolist())[0] + 127  # last row of region 0
    out["scales"][pad_row // 128 * 128 * kbp + (pad_row % 32) * 16 + ((pad_row % 128) // 32) * 4] = 0xFF
    v = M.validate_expand(out, ref)
    assert not v["passed"] and v["scales_mismatched"] == 1


def test_expand_bad_input_is_named():
    inp = M.make_expand_inputs(4, 48, 4, top_k=2, seed=1, device="cpu")
    with pytest.raises(InputError, match=r"H \(2 \* codes.shape\[1\]\): expected a multiple of 64"):
        M.expand_optimized(inp, M.make_expand_outputs(inp))
    with pytest.raises(InputError, match="top_k"):
        M.make_routing(4, num_experts=4, top_k=8, device="cpu")


def test_expand_bytes_count_padding_once():
    b = M.expand_bytes(T=256, counts=[64] * 32)
    opt = sum(x for _, x in b["optimized"])
    assert opt == 256 * (3584 + 448) + 2048 * 4 + 33 * 4 + 2048 * 3584 + 32 * 128 * 448 + 256 * 7168 * 2
    assert sum(x for _, x in b["unfused"]) > opt


# ---- kernels (GPU) ---------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("T,H,K", [(1, 7168, 8), (37, 7168, 8), (300, 512, 8), (5, 64, 4)])
def test_reduce_kernels_match_reference(T, H, K):
    inp = M.make_reduce_inputs(T, H, top_k=K, seed=T + H)
    y, w, s, yq = inp["y"], inp["w"], inp["shared"], inp["yq"]
    ref64, mag = M.reduce_reference_fp64(y, w, s)
    out = M.reduce_optimized(y, w, s, torch.full_like(s, float("nan")))
    v = M.validate_reduce(out, ref64, mag, exact=True)
    assert v["passed"], v
    yd = nvfp4.dequantize_reference(yq).view(T, K, H)
    refq, magq = M.reduce_reference_fp64(yd, w, s)
    for version in ((1, 2) if K == 8 else (2,)):
        outq = M.reduce_optimized_nvfp4(yq, w, s, torch.full_like(s, float("nan")), version=version)
        v = M.validate_reduce(outq, refq, magq, exact=True)
        assert v["passed"], (version, v)
    v = M.validate_reduce(M.reduce_dequant_then_reduce(yq, w, s), refq, magq, exact=False)
    assert v["passed"], v


@pytest.mark.gpu
def test_dequant_kernel_is_bit_equal_to_the_reference():
    inp = M.make_reduce_inputs(64, 1024, seed=9)
    yq = inp["yq"]
    got = M.dequantize_rows_bf16(yq)
    want = nvfp4.dequantize_reference(yq).to(torch.bfloat16)
    assert torch.equal(got.view(torch.int16), want.view(torch.int16))


@pytest.mark.gpu
@pytest.mark.parametrize("T,H,E", [(32, 7168, 32), (257, 1024, 32), (3, 64, 8), (600, 2048, 256)])
def test_expand_kernel_matches_reference(T, H, E):
    inp = M.make_expand_inputs(T, H, E, seed=T)
    ref = M.expand_reference(inp["codes"], inp["scales"], inp["routing"])
    for fn in (M.expand_unfused, M.expand_optimized):
        v = M.validate_expand(fn(inp, M.make_expand_outputs(inp)), ref)
        assert v["passed"], (fn.__name__, v)


@pytest.mark.gpu
def test_expand_kernel_reads_the_row_count_on_the_device():
    """Same buffers, fewer valid rows (offsets changed on the device only): only those rows are written."""
    inp = M.make_expand_inputs(100, 512, 16, seed=4)
    r = inp["routing"]
    half = M.Routing(r.permuted_src, r.expert_offsets.clone(), r.num_tokens, r.num_experts)
    off = half.expert_offsets.tolist()
    cut = [min(o, off[-1] // 2) for o in off]  # the first experts keep their rows, the rest get none
    half.expert_offsets.copy_(torch.tensor(cut, dtype=torch.int32))
    out = M.expand_optimized(dict(inp, routing=half), M.make_expand_outputs(inp))
    R = cut[-1]
    assert torch.equal(out["codes"][:R], inp["codes"][r.permuted_src[:R].long()])
    assert (out["codes"][R:] == 0xA5).all()  # rows past the device count untouched
