"""wo GEMM v9 (row-owned CTAs, one kernel per call): CPU checks of the v9 stream and the configs; GPU checks of the
kernel against the fp32 GEMM of the dequantized operands."""

import functools
import re
from pathlib import Path

import pytest
import torch
from wo_cases import (
    all_codes_weight,
    check_all_codes,
    check_fused_shapes,
    check_gemm_rejects_bad_input,
    check_pdl_back_to_back,
    small_problem,
)

from workbench.runtime import InputError
from workbench.techniques import nvfp4 as nv
from workbench.techniques import wo_gemm as wo
from workbench.techniques import wo_gemm_v5 as v5
from workbench.techniques import wo_gemm_v9 as v9

ROOT = Path(__file__).resolve().parents[1]

# The builds the GPU tests run: one of each x-row count / token tile and warp layout the A/B runs timed, the cluster,
# early-release, split-accumulator (ls) and clock-stamped (prof: the build's own math) forms, and v9p's tuned builds
# (the dispatcher's); PDL back to back on a subset of them.
V9_GPU = [v9.V9Config(7, 8, 8, 8, 4), v9.V9Config(7, 8, 12, 12, 3), v9.V9Config(7, 16, 8, 8, 3), v9.V9Config(7, 32, 4, 4, 4)]
V9_GPU_PDL = [v9.V9Config(7, 8, 8, 8, 4), v9.V9Config(7, 16, 12, 12, 2)]
V9P_GPU = sorted(set(v9.V9P_TUNED) | {v9.V9PConfig(7, 1, 8, 8, 4), v9.V9PConfig(7, 2, 8, 8, 3), v9.V9PConfig(7, 2, 16, 8, 3),
                                      v9.V9PConfig(7, 1, 8, 8, 4, cl=2), v9.V9PConfig(7, 2, 8, 8, 3, cl=2),
                                      v9.V9PConfig(7, 2, 8, 8, 3, er=True), v9.V9PConfig(7, 1, 8, 8, 4, ls=True),
                                      v9.V9PConfig(7, 1, 16, 8, 4, er=True, prof=True)}, key=str)
V9P_GPU_PDL = [v9.V9PConfig(7, 1, 8, 8, 4), v9.V9PConfig(7, 1, 16, 4, 8), v9.V9PConfig(7, 2, 8, 8, 3),
               v9.V9PConfig(7, 1, 8, 8, 4, cl=2), v9.V9PConfig(7, 2, 8, 8, 3, cl=2)]


def test_stream_v9_roundtrip_all_codes_and_scales():
    """prepare_stream_v9 + the kernel's reads and rotate decode (emulated bit for bit) = dequantize_reference, over
    all 16 codes, zero-scale blocks and the smallest and largest scale bytes, across several row steps."""
    q = all_codes_weight(64, 1024, seed=0, edge_rows=True)
    data = v9.prepare_stream_v9(q, rows_per_step=32)
    assert data.shape == (1024 // 128, 64 // 8, 576) and data.dtype == torch.uint8
    assert torch.equal(v9.decode_stream_v9(data, q.global_scale, q.shape), nv.dequantize_reference(q))
    assert torch.equal(v9.prepare_stream_v9(q), data)  # the row step changes nothing


def test_stream_v9_lane_words_hold_their_k():
    """Lane (g, t), word jw of chunk c and slice s holds row 8s + g at k = 128c + 32jw + 8t + 0..7: a weight whose
    only nonzero code sits at one (row, k) lands in exactly that lane's word, and its scale byte at 8g + 4h + jw."""
    N, K, row, k = 32, 512, 13, 128 * 2 + 32 * 3 + 8 * 2 + 5
    codes = torch.zeros(N, K, dtype=torch.uint8)
    codes[row, k] = 0x7  # 6.0
    sf = torch.full((N, K // 16), 0x38, dtype=torch.uint8)  # 1.0
    q = nv.NVFP4Tensor(nv.pack_nibbles(codes), sf, torch.tensor(1.0), "linear", (N, K))
    d = v9.prepare_stream_v9(q)
    s, g, c, jw, t = row // 8, row % 8, k // 128, (k % 128) // 32, (k % 32) // 8
    lane_words = d[..., :512].reshape(K // 128, N // 8, 32, 16)
    nz = (lane_words != 0).nonzero().tolist()
    assert {(a, b, ln, byte // 4) for a, b, ln, byte in nz} == {(c, s, 4 * g + t, jw)}
    dec = v9.decode_stream_v9(d, q.global_scale, q.shape)
    assert dec[row, k] == 6.0 and int((dec != 0).sum()) == 1
    assert int(d[c, s, 512 + 8 * g + 4 * (t >> 1) + jw]) == int(wo._reencode_scales(sf[:1, :1]))


def test_v9_configs_instantiated_and_fit():
    """Every config names an `// @instantiate` line, fits Hopper's shared memory, and has a chunk count per stage
    that its warps split evenly; v9_candidates picks the smallest x-row count that serves M."""
    src = (ROOT / "kernels" / "wo_gemm_v9.cu").read_text()
    inst = set(re.findall(r"//\s*@instantiate\s+(.+)", src))
    for cfg in v9.V9_KERNELS + v9.V9_DIAGNOSTICS:
        assert cfg.expr in inst, cfg
        assert cfg.smem <= v5.MAX_DYNAMIC_SMEM and cfg.ch % cfg.warps == 0, cfg
    assert {c.xr for c in v9.v9_candidates(1)} == {8} and {c.xr for c in v9.v9_candidates(8)} == {8}
    assert {c.xr for c in v9.v9_candidates(9)} == {16} and {c.xr for c in v9.v9_candidates(32)} == {32}
    assert v9.v9_candidates(33) == []


def test_v9_grid_and_bad_config():
    """wo's 896 slices on 132 SMs: 132 CTAs of 6-7 slices; more rows than the build's slices per CTA allow, or
    more tokens than its x rows, are named."""
    cfg = v9.V9_KERNELS[0]
    assert v9.v9_grid(7168, 132, cfg) == 132 and v9.v9_grid(64, 132, cfg) == 8
    with pytest.raises(InputError, match="N"):
        v9.v9_grid(8 * 7 * 132 + 8, 132, cfg)


def test_v9_bad_input():
    check_gemm_rejects_bad_input(v9.w4a16_gemm_v9)
    q = nv.quantize_reference(torch.randn(64, 192), "tensor")
    with pytest.raises(InputError, match="K"):
        v9.prepare_stream_v9(q)


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", V9_GPU, ids=str)
def test_gpu_w4a16_v9_matches_fp32_of_dequantized(cfg):
    # 7168 rows (132 CTAs of 6-7 slices), 1040 rows (130 CTAs of one slice), 64 rows; K = 1536 (12 chunks) leaves a
    # partial last stage for 8 and 16 chunks per stage
    ms = (1, 3, cfg.xr // 2 + 1, cfg.xr)
    check_fused_shapes(v9.w4a16_gemm_v9, cfg, ms, [(7168, 2048), (1040, 1536), (64, 1024)])


@pytest.mark.gpu
def test_gpu_w4a16_v9_all_codes_and_scales():
    check_all_codes(v9.w4a16_gemm_v9, v9.V9_KERNELS[:1], 8)
    check_all_codes(v9.w4a16_gemm_v9, [c for c in v9.V9_KERNELS if c.xr == 16], 16)


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", V9_GPU_PDL, ids=str)
def test_gpu_v9_pdl_back_to_back(cfg):
    check_pdl_back_to_back(v9.w4a16_gemm_v9, cfg, cfg.xr)


@pytest.mark.gpu
def test_gpu_v9_rejects_too_many_tokens():
    x, q, _ = small_problem(9, N=64, K=512)
    with pytest.raises(InputError, match="M"):
        v9.w4a16_gemm_v9(x, wo.prepare_weight(q), v9.V9_KERNELS[0])


@pytest.mark.parametrize("N,grid", [(64, 3), (64, 8), (128, 5), (64, 1), (112, 2)])
def test_stream_v9p_roundtrip_all_codes_and_scales(N, grid):
    """prepare_stream_v9p + the kernel's reads and rotate decode (emulated) = dequantize_reference, for grids that
    give CTAs odd and even slice counts (pair units and a lone unit) and one slice each."""
    q = all_codes_weight(N, 1024, seed=0, edge_rows=True)
    data = v9.prepare_stream_v9p(q, grid)
    assert data.shape == (1024 // 128, N // 8, 576) and data.dtype == torch.uint8
    assert torch.equal(v9.decode_stream_v9p(data, q.global_scale, q.shape, grid), nv.dequantize_reference(q))
    with pytest.raises(InputError, match="grid"):
        v9.prepare_stream_v9p(q, N // 8 + 1)


def test_cta_slices_cover_every_slice_once():
    for S, grid in ((896, 132), (130, 130), (7, 3)):
        shares = v9.cta_slices(S, grid)
        assert [lo for lo, _ in shares] == [sum(c for _, c in shares[:b]) for b in range(grid)]
        assert sum(c for _, c in shares) == S and max(c for _, c in shares) - min(c for _, c in shares) <= 1
    assert {c for _, c in v9.cta_slices(896, 132)} == {6, 7}


def test_v9p_configs_instantiated_and_fit():
    src = (ROOT / "kernels" / "wo_gemm_v9.cu").read_text()
    inst = set(re.findall(r"//\s*@instantiate\s+(.+)", src))
    assert set(V9P_GPU + V9P_GPU_PDL) <= set(v9.V9P_KERNELS + v9.V9P_TIMELINES)
    assert set(V9_GPU + V9_GPU_PDL) <= set(v9.V9_KERNELS)
    for cfg in v9.V9P_KERNELS + v9.V9P_DIAGNOSTICS + v9.V9P_TIMELINES:
        assert cfg.expr in inst, cfg
        assert cfg.smem <= v5.MAX_DYNAMIC_SMEM and cfg.maxs % 2 == 1, cfg
        assert cfg.ch % cfg.warps == 0 or cfg.warps % cfg.ch == 0, cfg
    assert {c.nt for c in v9.v9p_candidates(8)} == {1} and {c.nt for c in v9.v9p_candidates(16)} == {2}
    assert v9.v9p_candidates(17) == []


def test_v9p_bad_input():
    check_gemm_rejects_bad_input(v9.w4a16_gemm_v9p)


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", V9P_GPU, ids=str)
def test_gpu_w4a16_v9p_matches_fp32_of_dequantized(cfg):
    # 7168 rows (132 CTAs of 6-7 slices: 3 pairs and a lone slice), 1040 rows (130 CTAs of one lone slice), 112
    # rows (14 CTAs, one lone slice each), K = 1536: a partial last stage for 8 and 16 chunks per stage
    ms = (1, 3, cfg.tokens // 2 + 1, cfg.tokens)
    check_fused_shapes(v9.w4a16_gemm_v9p, cfg, ms, [(7168, 2048), (1040, 1536), (112, 1024)])


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", list(v9.V9P_TUNED), ids=str)
@pytest.mark.parametrize("x_first", [True, False])
def test_gpu_v9p_producer_orders(cfg, x_first):
    # x's copies of a stage before or after its weight's (the ordinary-launch and the PDL order), ordinary launches;
    # K = 2560 / 1536: 20 / 12 chunks, partial last stages for 8 and 12 chunks per stage
    gemm = functools.partial(v9.w4a16_gemm_v9p, x_first=x_first)
    check_fused_shapes(gemm, cfg, (1, cfg.tokens), [(1040, 2560), (112, 1536)])


@pytest.mark.gpu
def test_gpu_w4a16_v9p_all_codes_and_scales():
    check_all_codes(v9.w4a16_gemm_v9p, [c for c in v9.V9P_KERNELS if c.nt == 1][::3], 8)
    check_all_codes(v9.w4a16_gemm_v9p, [c for c in v9.V9P_KERNELS if c.nt == 2], 16)


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", V9P_GPU_PDL, ids=str)
def test_gpu_v9p_pdl_back_to_back(cfg):
    check_pdl_back_to_back(v9.w4a16_gemm_v9p, cfg, cfg.tokens)
