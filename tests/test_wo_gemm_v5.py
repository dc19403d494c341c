"""wo GEMM v5 (wgmma + TMA ring): CPU checks of the v5 stream layout and the configs; GPU checks of
the kernel against the fp32 GEMM of the dequantized operands."""

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

from workbench.runtime import InputError, compile_kernel
from workbench.runtime.ptxas_notices import serialized_wgmma
from workbench.techniques import nvfp4 as nv
from workbench.techniques import wo_gemm as wo
from workbench.techniques import wo_gemm_v5 as v5

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("bk,pairs", [(256, False), (128, False), (256, True), (128, True)])
def test_stream_v5_roundtrip_all_codes_and_scales(bk, pairs):
    """prepare_stream_v5 + the kernel's reads and decode (emulated bit for bit) = dequantize_reference."""
    q = all_codes_weight(64, 1024, seed=0, edge_rows=True)
    data = v5.prepare_stream_v5(q, rows_per_step=32, block_k=bk, scale_pairs=pairs)  # several row steps
    assert data.shape == (64 // 16, 1024 // bk, 9 * bk) and data.dtype == torch.uint8
    assert torch.equal(v5.decode_stream_v5(data, q.global_scale, q.shape, block_k=bk, scale_pairs=pairs),
                       nv.dequantize_reference(q))
    if pairs:  # the same codes; only the scale table's byte placement differs
        plain = v5.prepare_stream_v5(q, rows_per_step=32, block_k=bk)
        assert torch.equal(data[..., :8 * bk], plain[..., :8 * bk]) and not torch.equal(data, plain)
        grouped = v5.prepare_stream_v5(q, rows_per_step=32, block_k=bk, group_tiles=4, scale_pairs=True)
        assert torch.equal(v5.decode_stream_v5(grouped, q.global_scale, q.shape, block_k=bk, group_tiles=4,
                                               scale_pairs=True), nv.dequantize_reference(q))
        return
    with pytest.raises(InputError, match="block_k"):
        v5.prepare_stream_v5(q, block_k=64)
    grouped = v5.prepare_stream_v5(q, rows_per_step=32, block_k=bk, group_tiles=2)
    assert grouped.shape == (2, 1024 // bk, 2, 9 * bk)
    assert torch.equal(grouped[1, 3, 0], data[2, 3]) and torch.equal(grouped[0, 1, 1], data[1, 1])
    assert torch.equal(v5.decode_stream_v5(grouped, q.global_scale, q.shape, block_k=bk, group_tiles=2),
                       nv.dequantize_reference(q))
    with pytest.raises(InputError, match="group_tiles"):
        v5.prepare_stream_v5(q, block_k=bk, group_tiles=3)


@pytest.mark.parametrize("bk,group", [(256, 1), (128, 1), (256, 4)])
def test_stream_v5_rotate_layout_roundtrip(bk, group):
    """The rotate word layout (LEAN bit 7): prepare_stream_v5(word_layout="rot") + the kernel's rot_decode_word
    (emulated bit for bit: two rotates, the masked multiply, the masks) = dequantize_reference, over all 16 codes
    and the edge scales; the codes land elsewhere in each word, the scale table is the same."""
    q = all_codes_weight(64, 1024, seed=1, edge_rows=True)
    rot = v5.prepare_stream_v5(q, rows_per_step=32, block_k=bk, group_tiles=group, scale_pairs=True, word_layout="rot")
    assert torch.equal(v5.decode_stream_v5(rot, q.global_scale, q.shape, block_k=bk, group_tiles=group,
                                           scale_pairs=True, word_layout="rot"), nv.dequantize_reference(q))
    v4 = v5.prepare_stream_v5(q, rows_per_step=32, block_k=bk, group_tiles=group, scale_pairs=True)
    assert torch.equal(rot[..., 8 * bk:], v4[..., 8 * bk:]) and not torch.equal(rot, v4)
    with pytest.raises(InputError, match="word_layout"):
        v5.prepare_stream_v5(q, word_layout="rotate")


def test_word_layouts_use_every_bit_once():
    """Each layout puts the 32 code bits (8 codes x magnitude and sign) on 32 distinct word bits; in the rotate
    layout a3's masked word times ROT_MUL is three copies with disjoint bits (the product is their OR: no carry can
    reach a kept bit), and the header's constants are the module's."""
    for layout in v5.WORD_LAYOUTS:
        bits = [b for reg in v5.word_sources(layout) for el in reg for b in el]
        assert sorted(bits) == list(range(32)), layout
    left = [b for b in range(32) if v5.ROT_LEFT >> b & 1]
    copies = [{b + p for b in left if b + p < 32} for p in v5.ROT_MUL_SHIFTS]
    assert sum(map(len, copies)) == len(set().union(*copies))
    assert sorted(left) == sorted(v5.word_sources("rot")[3][0] + v5.word_sources("rot")[3][1])
    header = (ROOT / "kernels" / "common" / "wb_nvfp4_decode.cuh").read_text()
    assert f"ROT_LEFT = 0x{v5.ROT_LEFT:08x}u" in header and f"ROT_T = 0x{v5.ROT_T:08x}u" in header
    assert "(1u << 2) | (1u << 7) | (1u << 12)" in header and v5.ROT_MUL_SHIFTS == (2, 7, 12)
    assert all(f"__funnelshift_l(w, w, {sh})" in header for sh in v5.ROT_SHIFTS[1:])
    with pytest.raises(InputError, match="word_layout"):
        v5.word_sources("v6")


@pytest.mark.parametrize("pairs", [False, True])
def test_chunk_major_stream_reads(pairs):
    """The chunk-major stream (LEAN bit 5) holds, at the kernel's addresses, exactly the bytes the grouped kernel
    reads: chunk c of tile t, lane l's 16 code bytes at [c][t][16 l], and row g's / row g + 8's scale words of chunk
    c at [c][t][512 + 8 g] / [c][t][516 + 8 g]; and it converts back without loss."""
    q = all_codes_weight(256, 512, seed=3, edge_rows=True)
    grouped = v5.prepare_stream_v5(q, rows_per_step=64, group_tiles=16, scale_pairs=pairs)
    cm = v5.chunk_major(grouped)
    assert cm.shape == (1, 2, 4, 16, v5.CHUNK_BYTES) and torch.equal(v5.grouped_from_chunk_major(cm), grouped)
    for kb, c, t, lane in [(0, 0, 0, 0), (1, 3, 15, 31), (0, 1, 7, 5), (1, 2, 9, 18)]:
        tile = grouped[0, kb, t]
        assert torch.equal(cm[0, kb, c, t, 16 * lane:16 * lane + 16], tile[(c * 32 + lane) * 16:(c * 32 + lane) * 16 + 16])
        g = lane >> 2
        entry = tile[2048 + ((c // 2) * 8 + g) * 16:2048 + ((c // 2) * 8 + g) * 16 + 16]
        w = 4 * (c & 1)
        assert torch.equal(cm[0, kb, c, t, 512 + 8 * g:516 + 8 * g], entry[w:w + 4])  # row g
        assert torch.equal(cm[0, kb, c, t, 516 + 8 * g:520 + 8 * g], entry[8 + w:12 + w])  # row g + 8
    with pytest.raises(InputError, match="grouped"):
        v5.chunk_major(v5.prepare_stream_v5(q, block_k=128, group_tiles=16))


def test_stream_v5_natural_k_order():
    """A single nonzero code lands in the word, lane and byte the kernel's fragment indexing expects:
    row r = 16 tile + 8 h + g, k = 256 kb + 16 (4 c + j) + 8 hi + 2 t + e."""
    N, K = 32, 512
    for (row, k) in [(0, 0), (9, 3), (17, 266), (31, 511), (5, 8 + 2 * 3 + 1)]:
        codes = torch.zeros((N, K), dtype=torch.uint8)
        codes[row, k] = 7  # 6.0
        sf = torch.full((N, K // 16), 0x38, dtype=torch.uint8)  # 1.0
        q = nv.NVFP4Tensor(nv.pack_nibbles(codes), sf, torch.tensor(1.0), "linear", (N, K))
        data = v5.prepare_stream_v5(q)
        tile, kb = row // 16, k // 256
        kin = k % 256
        c, j, g, t = kin // 64, (kin % 64) // 16, row % 8, (kin % 8) // 2
        lane = 4 * g + t
        word = data[tile, kb, (c * 32 + lane) * 16 + 4 * j:(c * 32 + lane) * 16 + 4 * j + 4]
        assert int(word.to(torch.int64).sum()) > 0, (row, k)
        nonzero = torch.nonzero(data[:, :, :2048].reshape(-1))
        assert nonzero.numel() >= 1 and all(
            int(i) // 2048 == tile * (K // 256) + kb for i in nonzero), (row, k)
        dq = v5.decode_stream_v5(data, q.global_scale, q.shape)
        assert float(dq[row, k]) == 6.0 and int((dq != 0).sum()) == 1


def test_scale_pairs_cover_every_scale_byte():
    """Every e4m3 scale's re-encoded byte u, placed at each of the 4 steps of a word: the kernel's LOP3 /
    rotate (emulated) gives back s exactly, and bf16 s * 2^107 stays finite (u >> 3 <= 18 < 31)."""
    sf = torch.arange(0, 127, dtype=torch.uint8)  # every finite non-negative e4m3 byte
    u = wo._reencode_scales(sf).to(torch.int64)
    want = nv.e4m3_decode(sf).float()
    assert int(u.max()) >> 3 <= 18
    for j in range(4):
        words = v5.pack_scale_pairs(u << (8 * j))
        got = v5.scale_pair_values(words)[:, j]
        nonzero = u > 0
        assert torch.equal(got[nonzero], want[nonzero]) and torch.isfinite(got).all()


def test_v5_configs_instantiated_and_fit():
    text = ROOT.joinpath("kernels/wo_gemm_v5.cu").read_text()
    inst = set(re.findall(r"@instantiate (.+)", text))
    for c in v5.V5_KERNELS + v5.V5_KERNELS_LEAN:
        assert c.expr in inst and c.with_work(True).expr in inst, c.expr
        assert c.smem <= v5.MAX_DYNAMIC_SMEM, (c, c.smem)
        assert 7168 % c.rows == 0 and 16384 % c.kc == 0
    for c in v5.V5_TIMELINES:
        assert c.expr in inst and c.smem <= v5.MAX_DYNAMIC_SMEM, c.expr
    for c in v5.V5_KERNELS_CLUSTER:  # one grid wave of whole clusters on a 132-SM H100, each CTA one row group
        assert c.expr in inst and c.smem <= v5.MAX_DYNAMIC_SMEM and c.red and c.grouped, c.expr
        assert 7168 % c.rows == 0 and c.grid(7168, 132) <= 132 and (16384 // c.kc) % c.cl == 0, c
        v5.check_cluster(c, 16384)
    for M in (1, 8, 9, 16, 17, 32, 33, 64):
        assert v5.v5_candidates(M) and all(c.tokp >= M for c in v5.v5_candidates(M))


# Builds ptxas serializes (C7512: "wgmma.mma_async instructions are serialized due to insufficient register
# resources"): each wgmma waits for the previous one, so their times measure that, not the design. They stay as
# measured steps (docs/notes_wo_gemm.md, ninth pass); this list is kept exact, so a new serialized build is noticed.
# (The GS 4 lean 7 reduce build left it when the row group of the held unit moved into a register, eleventh pass.)
V5_SERIALIZED = {
    "w4a16_v5<32, 1, 4, 256, 4, 2, 2, 4, false>", "w4a16_v5<32, 1, 4, 256, 4, 2, 2, 4, true>",
    "w4a16_v5<32, 1, 4, 256, 4, 2, 2, 4, false, 0, 256, true, 3>", "w4a16_v5<32, 1, 4, 256, 4, 2, 2, 4, true, 0, 256, true, 3>",
    "w4a16_v5<32, 1, 7, 256, 2, 2, 1, 2, false>", "w4a16_v5<32, 1, 7, 256, 2, 2, 1, 2, true>"}


def test_v5_compiles_without_spills():
    """The sm_90a compile gate (NVRTC, no GPU): every instantiation, no register spills."""
    ck = compile_kernel("wo_gemm_v5")
    names = {low: e for e, low in ck.lowered.items()}
    assert len(ck.resources) == (2 * len(v5.V5_KERNELS + v5.V5_KERNELS_BK128 + v5.V5_KERNELS_GROUPED + v5.V5_KERNELS_LEAN)
                                 + len(v5.V5_DIAGNOSTICS) + len(v5.V5_TIMELINES) + len(v5.V5_KERNELS_CLUSTER))
    for low, r in ck.resources.items():
        assert r.spill_stores == 0 and r.spill_loads == 0, (names.get(low, low), r)
    # Every ptxas serialization notice: C7512 (register pressure) only in the builds of V5_SERIALIZED, which must stay
    # exact; C7513 / C7514 (non-wgmma instructions writing or reading wgmma registers inside the pipeline) in none: a
    # clock stamp in the wrong place once serialized every timeline build, a flush before a stage wait a whole build.
    assert serialized_wgmma(ck) == V5_SERIALIZED


def test_v5_cluster_config_checks():
    """Cluster builds: their name and template expression carry cl / skip; a stream-K build with skip, a cluster
    build without red or grouped, or k blocks that do not split over the cluster get a clear error."""
    c = v5.V5_KERNELS_CLUSTER[0]
    assert "_cl4_skip2" in str(c) and c.expr.endswith(", 135, false, 4, 2>") and c.rows == 224
    with pytest.raises(InputError, match="skip"):
        v5.check_cluster(v5.V5Config(32, 1, 4, 256, 4, 2, 2, 2, True, grouped=True, skip=1), 16384)
    with pytest.raises(InputError, match="red=True"):
        v5.check_cluster(c.with_work(False), 16384)
    with pytest.raises(InputError, match="split"):
        v5.check_cluster(c, 256 * 6)


def test_v5_bad_input():
    q = nv.quantize_reference(torch.randn(16, 128), "tensor")
    with pytest.raises(InputError, match="256"):
        v5.prepare_stream_v5(q)
    q = nv.quantize_reference(torch.randn(16, 256), "row")
    with pytest.raises(InputError, match="global_scale"):
        v5.prepare_stream_v5(q)
    with pytest.raises(InputError, match="M"):
        v5.v5_tokp_for(65)
    check_gemm_rejects_bad_input(v5.w4a16_gemm_v5)
    with pytest.raises(InputError, match="fin"):  # the in-kernel finalize converts a reduce-only workspace
        wo.check_work(v5.V5Config(8, 1, 2, 512, 4, 2, 2, 2, fin=True))
    with pytest.raises(InputError, match="ctas"):  # one CTA per SM at most: the ring and stream-K assume it
        v5.check_ctas(v5.V5_KERNELS_LEAN[0].with_ctas(133), 132)
    with pytest.raises(InputError, match="ctas"):
        v5.check_ctas(v5.V5_KERNELS_CLUSTER[0].with_ctas(100), 132)


def test_row_group_multiply_high_is_exact():
    # LEAN bit 10: floor(u / n_kc) as umulhi(u, ceil(2^32 / n_kc)) for every unit u < units = row_groups n_kc, under
    # the launcher's limit row_groups n_kc^2 < 2^32 (n_kc = 1: the row group is u); all u at small n_kc, the edges
    # of every row group at large ones
    for n_kc in list(range(2, 130)) + [255, 256, 1000, 4096, 4097, 65535]:
        magic = (2**32 + n_kc - 1) // n_kc
        row_groups = min(2048, (2**32 - 1) // n_kc**2)
        us = range(row_groups * n_kc) if n_kc < 64 else [
            r * n_kc + d for r in range(0, row_groups, max(1, row_groups // 97)) for d in (0, 1, n_kc - 2, n_kc - 1)]
        assert all((u * magic) >> 32 == u // n_kc for u in us), n_kc


def test_even_ctas():
    # the wo shape's units on a 132-SM H100: 128 CTAs of equal shares; none when too many SMs would idle
    assert v5.even_ctas(1792, 132) == 128 and v5.even_ctas(3584, 132) == 128 and v5.even_ctas(1792, 128) == 128
    assert v5.even_ctas(1792, 78) == 0 and v5.even_ctas(1792, 64) == 64
    for M in (1, 8, 32, 64):
        even = [c for c in v5.v5_candidates(M) if c.ctas]
        assert even and all(c.red and not c.grab and c.units % c.ctas == 0 for c in even)


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", v5.V5_KERNELS + [k.with_work(True, s0, g) for k in v5.V5_KERNELS for s0, g in
                                                 ((0, 0), (1, 1), (0, 2))]
                         + [k.with_work(True, s0, g) for k in v5.V5_KERNELS_BK128 + v5.V5_KERNELS_GROUPED
                            + v5.V5_KERNELS_LEAN for s0, g in ((0, 0), (1, 1))]
                         + v5.V5_KERNELS_BK128 + v5.V5_KERNELS_GROUPED + v5.V5_KERNELS_LEAN
                         + [k.with_work(True, s0, g).with_fin() for k in v5.V5_KERNELS_LEAN for s0, g in ((0, 0), (1, 1))
                            if not k.lean & 2048]
                         + v5.V5_KERNELS_CLUSTER
                         + [k.with_work(True).with_ctas(128) for k in v5.V5_KERNELS_LEAN if k.lean & 128],
                         ids=str)
def test_gpu_w4a16_v5_matches_fp32_of_dequantized(cfg):
    # several row groups; 132 CTAs share 24..96 units: uneven stream-K shares
    check_fused_shapes(v5.w4a16_gemm_v5, cfg, (1, 3, cfg.tokp // 2 + 1, cfg.tokp), [(2 * cfg.rows * 3, 2048)])


@pytest.mark.gpu
def test_gpu_w4a16_v5_all_codes_and_scales():
    check_all_codes(v5.w4a16_gemm_v5, [c for c in v5.V5_KERNELS + [k.with_work(True, 1, 1) for k in v5.V5_KERNELS
                                                                    + v5.V5_KERNELS_LEAN] if 256 % c.rows == 0], 8)


@pytest.mark.gpu
@pytest.mark.parametrize("family,cfg", [("v5", c) for c in v5.V5_KERNELS_LEAN if c.tokp in (8, 32)]
                         + [("v5", v5.V5_KERNELS_LEAN[0].with_work(True, 1, 1))]
                         + [("v5", c.with_work(True, s0, g).with_fin()) for c in v5.V5_KERNELS_LEAN if c.tokp in (8, 32)
                            and not c.lean & 2048 for s0, g in ((0, 0), (1, 1))]
                         + [("v6", k) for k in wo.v6_candidates(8) if k.red][:3], ids=str)
def test_gpu_pdl_back_to_back(family, cfg):
    """enable_pdl: 8 back-to-back launches on the wo shape, each GEMM overlapping the previous call's
    wo_finalize (same workspace, same counters), each output exact; then a plain call after them."""
    if family == "v5":
        check_pdl_back_to_back(v5.w4a16_gemm_v5, cfg.with_work(True, cfg.s0, cfg.grab), min(cfg.tokp, 32))
    else:
        check_pdl_back_to_back(wo.w4a16_gemm_v6, cfg, 8)


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", [c for c in v5.V5_TIMELINES if c.diag == 0], ids=str)
def test_gpu_timeline_builds_keep_the_math(cfg):
    """A timeline build's stamps change no result: v5_timeline's output (its workspace read in the build's own
    order, fragment-major with LEAN bit 11) matches the fp32 reference twice, and the stamp table is written."""
    x, q, ref = small_problem(cfg.tokp, N=4 * cfg.rows, K=2048, seed=5)
    pw = wo.prepare_weight(q)
    for _ in range(2):
        out, stamps = v5.v5_timeline(x, pw, cfg)
        v = wo.validate(out, ref)
        assert v["passed"], (cfg, v)
    assert int((stamps != 0).sum()) > 0


@pytest.mark.gpu
def test_gpu_fragment_major_workspace_refuses_fin():
    """LEAN bit 11 keeps the workspace in fragment-major order, which the in-kernel finalize does not read: the
    launcher names the conflict instead of writing a wrong output."""
    cfg = next(c for c in v5.V5_KERNELS_LEAN if c.lean & 2048).with_work(True).with_fin()
    assert cfg.frag_ws and cfg.fin
    x, q, _ = small_problem(cfg.tokp, N=2 * cfg.rows, K=2048, seed=3)
    with pytest.raises(InputError, match="fin"):
        v5.w4a16_gemm_v5(x, wo.prepare_weight(q), cfg)
