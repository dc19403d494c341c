"""wo GEMM step 5: the fused NVFP4 W4A16 kernel on warpgroup tensor cores (kernels/wo_gemm_v5.cu).

v4 (wo_gemm.py) decodes a register-held weight unit per warp into mma.sync fragments; its profile
showed the weight load exposed once per unit at M <= 8 and the activations re-read from L1 for every
16 weight rows at M >= 32. v5 keeps the decode and changes the data path: a producer warp streams the
weight (cp.async.bulk) and the x tile (TMA, 128-byte swizzle) into a STAGES-deep shared-memory ring,
and consumer warpgroups decode into wgmma's register A operand with x as the shared-memory B operand.

The v5 stream (prepare_stream_v5, once per weight at load time): uint8 [N/16, K/BK, 9 BK] for a block
k of BK = 256 (the default, 2304 bytes per block) or 128 (1152: smaller ring stages); per 16-row tile and
block, BK/64 chunks x 32 lanes x 16 B of code words and a BK-byte scale table:
- lane l = 4g + t, chunk c, word j (k16 step s = 4c + j): the 8 codes of rows g, g+8 at
  k = BK kb + 16 s + {2t, 2t+1, 2t+8, 2t+9}, placed as V4_WORD_LAYOUT (the A-fragment k order is
  natural, so x needs no permutation);
- scale entry q2 * 8 + g (16 B): re-encoded scale bytes of row g for steps 8 q2 .. 8 q2 + 7, then of
  row g + 8 (zero-scale blocks have their codes zeroed, as in v4).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..runtime import InputError
from . import nvfp4
from .nvfp4 import NVFP4Tensor
from .wo_gemm import (
    V4_WORD_LAYOUT,
    WS_UNIT,
    WS_UNIT_PAIRS,
    PreparedWeight,
    _reencode_scales,
    _workspace,
    check_gemm_input,
    check_prepare_input,
    check_work,
    decode_reencoded_scales,
    finalize,
    gemm_output,
)

V5_BLOCK_K = 256
V5_BLOCK_BYTES = 2304
V5_MAX_M = 64  # wgmma N <= 64 tokens per CTA (one token tile)
MAX_DYNAMIC_SMEM = 232448  # Hopper: 227 KB per block


def block_bytes(bk: int) -> int:
    """Bytes of one 16-row x bk-k block of the v5 stream: bk / 2 * 16 code bytes + bk scale bytes."""
    return 9 * bk


def pack_scale_pairs(words: torch.Tensor) -> torch.Tensor:
    """Scale words (int64, bytes u0..u3 = 4 k16 steps of one row) -> the scale-pairs placement that
    wb_nvfp4_decode.cuh's scale_pairs reads: u0 at bits 4-11, u1 at 12-19, u2 at 20-27, u3 split over 28-31
    (low nibble) and 0-3 (high nibble)."""
    u = [(words >> (8 * i)) & 0xFF for i in range(4)]
    return (u[0] << 4) | (u[1] << 12) | (u[2] << 20) | ((u[3] & 0xF) << 28) | (u[3] >> 4)


def scale_pair_values(words: torch.Tensor) -> torch.Tensor:
    """The kernel's scale_pairs (LOP3 with PAIR_MASK / PAIR_BIAS, a rotate by 8) emulated on packed scale
    words (int64 [...]): fp32 [..., 4], the scale s of steps 0..3 (s * 2^107 as bf16, times 2^-107)."""
    m32, mask, bias = 0xFFFFFFFF, 0x0FF00FF0, 0x70007000
    p02 = (words & mask) | bias
    p13 = ((((words >> 8) | (words << 24)) & m32) & mask) | bias
    halves = [p02 & 0xFFFF, p13 & 0xFFFF, p02 >> 16, p13 >> 16]  # steps 0, 1, 2, 3
    v = torch.stack([(h.to(torch.int32) << 16).view(torch.float32) for h in halves], dim=-1)
    return v * 2.0**-107


# Code-word layouts. A word holds the 8 codes of one lane and k16 step; fragment register r (row half h, k offset kk
# as in V4_WORD_LAYOUT) gets two codes, element e = 0 in its low bf16 half, e = 1 in the high one, whose magnitude
# bits 0-2 and sign must land on bits 6, 7, 8 and 15 of that half. word_sources(layout)[r][e]: the four word bits
# that hold them.
# "v4": V4_WORD_LAYOUT (v4_decode_word: 11 integer instructions per word).
# "rot" (LEAN bit 7, rot_decode_word): a0 = w & T, a1 / a2 = w rotated left by 10 / 13, then & T; a3's bits are the
# 8 left over, ROT_LEFT, masked and multiplied by ROT_MUL (three disjoint shifted copies, so no carries) then & T:
# 8 integer instructions. No four rotates tile the word, so one register needs more than a rotate and a mask.
WORD_LAYOUTS = ("v4", "rot")
ROT_T = 0x81C081C0
ROT_SHIFTS = (0, 10, 13)
ROT_LEFT = 0x001B001B
ROT_MUL_SHIFTS = (2, 7, 12)


def _targets(e: int) -> tuple[int, int, int, int]:
    return (6 + 16 * e, 7 + 16 * e, 8 + 16 * e, 15 + 16 * e)


def word_sources(layout: str) -> tuple[tuple[tuple[int, ...], ...], ...]:
    """[register][element] -> the word bit of the code's bits 0, 1, 2 (magnitude) and 3 (sign)."""
    if layout == "v4":
        return tuple(tuple((mp + 16 * e, mp + 1 + 16 * e, mp + 2 + 16 * e, sp + 16 * e) for e in (0, 1))
                     for _, _, mp, sp in V4_WORD_LAYOUT)
    if layout == "rot":
        regs = [tuple(tuple((t - sh) % 32 for t in _targets(e)) for e in (0, 1)) for sh in ROT_SHIFTS]
        left = [b for b in range(32) if ROT_LEFT >> b & 1]
        hit = {b + p: b for b in left for p in ROT_MUL_SHIFTS if b + p < 32}
        return tuple(regs) + (tuple(tuple(hit[t] for t in _targets(e)) for e in (0, 1)),)
    raise InputError(f"word_layout: expected one of {WORD_LAYOUTS}, got {layout!r}")


def decode_word_regs(words: torch.Tensor, layout: str) -> list[torch.Tensor]:
    """int64 code words -> the 4 fragment registers (bf16x2 bit patterns before the scale), with the same bit
    operations as the kernel's v4_decode_word / rot_decode_word (kernels/common/wb_nvfp4_decode.cuh)."""
    m32 = 0xFFFFFFFF
    if layout == "v4":
        T, MAG, SGN = 0x81C081C0, 0x01C001C0, 0x80008000
        return [words & T, (words << 6) & T & m32, ((words << 3) & MAG) | ((words << 5) & SGN),
                ((words >> 5) & MAG) | ((words << 1) & SGN)]
    if layout == "rot":
        def rotl(w, n):
            return ((w << n) | (w >> (32 - n))) & m32 if n else w
        mul = sum(1 << p for p in ROT_MUL_SHIFTS)
        return [rotl(words, sh) & ROT_T for sh in ROT_SHIFTS] + [(((words & ROT_LEFT) * mul) & m32) & ROT_T]
    raise InputError(f"word_layout: expected one of {WORD_LAYOUTS}, got {layout!r}")


def prepare_stream_v5(w: NVFP4Tensor, rows_per_step: int = 1024, block_k: int = V5_BLOCK_K,
                      group_tiles: int = 1, scale_pairs: bool = False, word_layout: str = "v4") -> torch.Tensor:
    """NVFP4Tensor [N, K] (linear scales, per-tensor global scale, N % 16 == 0, K % block_k == 0) -> the v5
    stream, uint8 [N/16, K/block_k, 9 block_k] on the weight's device (block_k 256 or 128); group_tiles > 1:
    grouped by unit, [N/(16 group_tiles), K/block_k, group_tiles, 9 block_k] (the same bytes, a unit's
    tiles adjacent); scale_pairs: each 4-byte scale word placed by pack_scale_pairs (the LEAN & 2 builds);
    word_layout: where each code's bits go in its word (word_sources: "v4", or "rot" for the LEAN & 128 builds).
    Exact: a relayout plus the v4 scale re-encoding."""
    src = word_sources(word_layout)
    if block_k not in (128, 256):
        raise InputError(f"block_k: expected 128 or 256, got {block_k}")
    if group_tiles < 1 or (w.shape[0] // 16) % group_tiles:
        raise InputError(f"group_tiles: expected a divisor of N/16 = {w.shape[0] // 16}, got {group_tiles}")
    N, K = check_prepare_input(w, block_k, "the v5 stream")
    nkb, CB = K // block_k, block_k // 64
    parts = []
    for r0 in range(0, N, rows_per_step):
        r1 = min(N, r0 + rows_per_step)
        T = (r1 - r0) // 16
        u = _reencode_scales(w.scales[r0:r1])  # [R, K/16]
        codes = nvfp4.unpack_nibbles(w.codes[r0:r1]).view(r1 - r0, K // 16, 16)
        codes = torch.where((u == 0)[..., None], torch.zeros_like(codes), codes).to(torch.int64)
        # [tile, h, g, kb, c, j, hi, t, e]: row = 16 tile + 8 h + g, k = BK kb + 64 c + 16 j + 8 hi + 2 t + e
        c = codes.view(T, 2, 8, nkb, CB, 4, 2, 4, 2)
        word = torch.zeros((T, 8, nkb, CB, 4, 4), dtype=torch.int64, device=codes.device)  # [tile, g, kb, c, j, t]
        for (h, kk, _, _), reg in zip(V4_WORD_LAYOUT, src):
            for e in (0, 1):
                code = c[:, h, :, :, :, :, kk // 2, :, e]
                for bit, pos in enumerate(reg[e]):
                    word |= ((code >> bit) & 1) << pos
        word = word.permute(0, 2, 3, 1, 5, 4).contiguous()  # [tile, kb, c, g, t, j]
        wbytes = torch.stack([(word >> (8 * i)) & 0xFF for i in range(4)], dim=-1).to(torch.uint8)
        wbytes = wbytes.view(T, nkb, CB * 512)
        # scales [tile, h, g, kb, q2, w, b] (block BK/16 kb + 8 q2 + 4 w + b) -> [tile, kb, q2, g, h, w, b]
        us = u.view(T, 2, 8, nkb, CB // 2, 2, 4).permute(0, 3, 4, 2, 1, 5, 6).reshape(T, nkb, block_k)
        if scale_pairs:  # each 4-byte word (4 steps of one row) -> the pair placement
            sw = us.to(torch.int64).view(T, nkb, block_k // 4, 4)
            sw = pack_scale_pairs(sw[..., 0] | (sw[..., 1] << 8) | (sw[..., 2] << 16) | (sw[..., 3] << 24))
            us = torch.stack([(sw >> (8 * i)) & 0xFF for i in range(4)], dim=-1).to(torch.uint8).view(T, nkb, block_k)
        parts.append(torch.cat([wbytes, us], dim=2))
    data = torch.cat(parts)
    if group_tiles > 1:
        T, nkb = data.shape[:2]
        data = data.view(T // group_tiles, group_tiles, nkb, -1).permute(0, 2, 1, 3)
    return data.contiguous()


CHUNK_BYTES = 576  # one 16-row tile's share of a 64-k chunk in the chunk-major stream: 512 code + 64 scale bytes


def chunk_major(grouped: torch.Tensor) -> torch.Tensor:
    """The grouped 256-k v5 stream [G, K/256, tiles, 2304] -> the chunk-major stream [G, K/256, 4, tiles, 576] (the
    same bytes): per unit and 64-k chunk c, each tile's 512 code bytes of c, then its 64 scale bytes of c (for each
    g = 0..7: the 4-byte scale word of row g, then that of row g + 8). A unit's chunk is one contiguous run, so it
    can be copied and waited for on its own (the LEAN bit 5 builds)."""
    G, nkb, T, bb = grouped.shape
    if bb != block_bytes(256):
        raise InputError(f"grouped: expected a grouped 256-k stream ([G, K/256, tiles, 2304]), got {list(grouped.shape)}")
    codes = grouped[..., :2048].reshape(G, nkb, T, 4, 512)
    # scale entry (q2, g): row g's 8 bytes (chunks 2 q2, 2 q2 + 1), then row g + 8's -> [.., T, q2, g, h, w, 4]
    table = grouped[..., 2048:].reshape(G, nkb, T, 2, 8, 2, 2, 4)
    scales = table.permute(0, 1, 2, 3, 6, 4, 5, 7).reshape(G, nkb, T, 4, 64)  # chunk c = 2 q2 + w: [g][h][4]
    return torch.cat([codes, scales], dim=-1).permute(0, 1, 3, 2, 4).contiguous()


def grouped_from_chunk_major(data: torch.Tensor) -> torch.Tensor:
    """Inverse of chunk_major: [G, K/256, 4, tiles, 576] -> [G, K/256, tiles, 2304]."""
    G, nkb, _, T, _ = data.shape
    d = data.permute(0, 1, 3, 2, 4)  # [G, nkb, T, c, 576]
    codes = d[..., :512].reshape(G, nkb, T, 2048)
    table = d[..., 512:].reshape(G, nkb, T, 2, 2, 8, 2, 4).permute(0, 1, 2, 3, 5, 6, 4, 7)  # [.., q2, g, h, w, 4]
    return torch.cat([codes, table.reshape(G, nkb, T, 256)], dim=-1).contiguous()


def v5_stream(pw: PreparedWeight, block_k: int = V5_BLOCK_K, group_tiles: int = 1,
              scale_pairs: bool = False, chunked: bool = False, word_layout: str = "v4") -> torch.Tensor:
    """The v5 stream (block_k 256 or 128, grouped by group_tiles tiles or not, scale pairs or not, chunk-major or
    not, word layout) of a prepared weight, built on first use and cached on it (66 MB each for wo)."""
    if pw.data_v5 is None:
        pw.data_v5 = {}
    key = (block_k, group_tiles, scale_pairs, chunked, word_layout)
    if key not in pw.data_v5:
        if chunked:
            pw.data_v5[key] = chunk_major(v5_stream(pw, block_k, group_tiles, scale_pairs, False, word_layout))
        else:
            pw.data_v5[key] = prepare_stream_v5(pw.source, block_k=block_k, group_tiles=group_tiles,
                                                scale_pairs=scale_pairs, word_layout=word_layout)
    return pw.data_v5[key]


def v5_stream_ready(pw: PreparedWeight, block_k: int = V5_BLOCK_K, group_tiles: int = 1,
                    scale_pairs: bool = False, chunked: bool = False, word_layout: str = "v4") -> bool:
    """Whether this v5 stream of pw is already built. A GEMM launched with PDL issues its first weight
    copies before griddepcontrol.wait (the weight is constant), so a call that builds the stream right
    before the launch must launch without PDL: the building kernels' last stores may still be in flight."""
    return pw.data_v5 is not None and (block_k, group_tiles, scale_pairs, chunked, word_layout) in pw.data_v5


def decode_stream_v5(data: torch.Tensor, global_scale: torch.Tensor, shape, block_k: int = V5_BLOCK_K,
                     group_tiles: int = 1, scale_pairs: bool = False, word_layout: str = "v4") -> torch.Tensor:
    """Emulate the kernel's reads and decode of the v5 stream (the same word, scale-entry and fragment
    indexing as w4a16_v5): fp32 weight e2m1 * sf * (1/g) [N, K]. CPU-capable (tests)."""
    N, K = shape
    T, nkb, CB = N // 16, K // block_k, block_k // 64
    if group_tiles > 1:  # the kernel's grouped addressing: unit (group, kb) holds its tiles side by side
        data = data.reshape(T // group_tiles, nkb, group_tiles, -1).permute(0, 2, 1, 3)
    d = data.to(torch.int64).reshape(T, nkb, block_bytes(block_k))
    cb = d[:, :, :CB * 512].reshape(T, nkb, CB, 32, 4, 4)  # [tile, kb, c, lane, j, byte]
    words = cb[..., 0] | (cb[..., 1] << 8) | (cb[..., 2] << 16) | (cb[..., 3] << 24)  # [tile, kb, c, lane, j]
    regs = decode_word_regs(words, word_layout)
    # scale of (row half h, lane's g, step 4c + j): entry ((c % 4) // 2) * 8 + g, byte 8 h + 4 (c % 2) + j
    sc = d[:, :, CB * 512:].reshape(T, nkb, CB // 2, 8, 2, 2, 4)  # [tile, kb, q2, g, h, w, b]
    if scale_pairs:  # the kernel's LOP3 / rotate on each packed word
        s = scale_pair_values(sc[..., 0] | (sc[..., 1] << 8) | (sc[..., 2] << 16) | (sc[..., 3] << 24))
    else:
        s = decode_reencoded_scales(sc.to(torch.uint8)).float()
    g_inv = torch.div(torch.ones_like(global_scale.float()), global_scale.float()).to(s.device)
    s = s * g_inv
    # -> [tile, kb, c, g, h, j] with c = 2 q2 + w, j = b
    s = s.permute(0, 1, 2, 5, 3, 4, 6).reshape(T, nkb, CB, 8, 2, 4)
    out = torch.zeros((T, 2, 8, nkb, CB, 4, 2, 4, 2), dtype=torch.float32, device=d.device)

    def bf16_bits_to_f32(b):
        return (b.to(torch.int32) << 16).view(torch.float32)

    for (h, kk, _, _), r in zip(V4_WORD_LAYOUT, regs):
        rr = r.view(T, nkb, CB, 8, 4, 4)  # [tile, kb, c, g, t, j]
        sc_h = s[:, :, :, :, h, :]  # [tile, kb, c, g, j]
        for e in (0, 1):
            v = bf16_bits_to_f32((rr >> (16 * e)) & 0xFFFF) * 2.0**126
            v = v * sc_h[:, :, :, :, None, :]
            # out [tile, h, g, kb, c, j, hi, t, e] <- v [tile, kb, c, g, t, j]
            out[:, h, :, :, :, :, kk // 2, :, e] = v.permute(0, 3, 1, 2, 5, 4)
    return out.view(N, K)


@dataclass(frozen=True)
class V5Config:
    """Template parameters of w4a16_v5: TOKP token columns (wgmma N, >= M), MT m64 row blocks per
    consumer warpgroup, NWG consumer warpgroups, KC k per unit, STAGES units in flight, GS k16 steps
    per wgmma commit group, NACC accumulator sets (independent accumulation chains), NBUF A-register
    buffers (NBUF - 1 groups in flight). One CTA per SM (the ring takes most of shared memory)."""

    tokp: int
    mt: int
    nwg: int
    kc: int
    stages: int
    gs: int
    nacc: int = 1
    nbuf: int = 2
    red: bool = False  # reduce only (red.add partials); wo_finalize writes out after the kernel
    s0: int = 0  # launch choices (red only): grab > 0 -> the first s0 units of each CTA static, then grabs
    grab: int = 0
    diag: int = 0  # diagnostic builds (kernels/wo_gemm_v5.cu, DIAG; wrong or no output, never validated)
    bk: int = V5_BLOCK_K  # block k of the stream it reads (256, or 128: half-size ring stages)
    grouped: bool = False  # reads the unit-grouped stream (a unit's tiles contiguous; kc == bk)
    lean: int = 0  # bit 0: precomputed wgmma descriptors; bit 1: scale pairs (the scale_pairs stream); bit 2:
    # shared-memory words loaded one chunk ahead; bit 3 (grouped): a unit's weight as one bulk copy; bit 4 (with
    # bit 2): that prefetch issued after the chunk's first wgmma group; bit 5 (grouped, kc 256): the chunk-major
    # stream (chunk_major) with one full barrier per 64-k chunk, so a warpgroup starts on a chunk once it is in; bit 6
    # (with bit 5): each chunk copied in 4-tile pieces; bit 7 (with bit 1): the rotate word layout (word_layout "rot");
    # bit 8 (with bit 2): the next stage's barrier tested and its first words loaded during a unit's last chunk;
    # bit 9: one full barrier per stage and warpgroup (each warpgroup waits for its own tiles and the stage's x);
    # bit 10: the consumers' row-group test by a multiply-high instead of a division at every unit's start; bit 11
    # (reduce builds): the workspace in fragment-major order, each warp's red.add on whole lines (no fin); bits
    # 12-13: RAMP (1-3 units issued, then the producer waits for stage 0 to fill before it issues more); bit 14
    # (with bit 3, static work): the CTA's first unit issued by thread 0 in the kernel's prologue
    fin: bool = False  # launch choice (red only): the in-kernel finalize (a grid barrier, then each CTA converts
    # its share of the workspace) instead of wo_finalize after the kernel
    prof: bool = False  # timeline build (PROF): clock stamps after the counters (launch with v5_timeline)
    cl: int = 0  # cluster build (CL): clusters of cl CTAs share a row group, each a 1/cl slice of k; the partials
    # are summed over distributed shared memory and written as bf16 (no workspace, no wo_finalize); red=True
    skip: int = 0  # (cluster builds) 16-row tiles the unit lacks against the warps' m64 blocks (rows = 64 mt nwg - 16 skip)
    ctas: int = 0  # launch choice: CTAs per launch (0: one per SM); a count that divides the units gives every CTA
    # the same static share (even_ctas), where one per SM leaves some CTAs a unit more than the rest

    @property
    def scale_pairs(self) -> bool:
        return bool(self.lean & 2)

    @property
    def chunked(self) -> bool:  # LEAN bit 5: the chunk-major stream, one full barrier per 64-k chunk
        return bool(self.lean & 32)  # (bit 6 changes only the copies)

    @property
    def frag_ws(self) -> bool:  # LEAN bit 11 (reduce builds): the fragment-major workspace
        return bool(self.lean & 2048) and self.red

    @property
    def split(self) -> bool:  # LEAN bit 9: one full barrier per stage and warpgroup
        return bool(self.lean & 512)

    @property
    def word_layout(self) -> str:  # LEAN bit 7: the rotate layout
        return "rot" if self.lean & 128 else "v4"

    def stream_args(self) -> tuple:
        """(block_k, group_tiles, scale_pairs, chunked, word_layout) of the v5 stream this build reads."""
        return (self.bk, self.rows // 16 if self.grouped else 1, self.scale_pairs, self.chunked, self.word_layout)

    @property
    def expr(self) -> str:
        full = self.lean != 0 or self.prof or self.cl
        d = f", {self.diag}" if self.diag or self.bk != V5_BLOCK_K or self.grouped or full else ""
        d += f", {self.bk}" if self.bk != V5_BLOCK_K or self.grouped or full else ""
        d += f", {str(self.grouped).lower()}" if self.grouped or full else ""
        d += f", {self.lean}" if full else ""
        d += ", true" if self.prof else (", false" if self.cl else "")
        d += f", {self.cl}, {self.skip}" if self.cl else ""
        return (f"w4a16_v5<{self.tokp}, {self.mt}, {self.nwg}, {self.kc}, {self.stages}, {self.gs}, "
                f"{self.nacc}, {self.nbuf}, {str(self.red).lower()}{d}>")

    @property
    def units(self) -> int:  # for the wo shape
        return (7168 // self.rows) * (16384 // self.kc)

    def with_work(self, red: bool, s0: int = 0, grab: int = 0) -> V5Config:
        return dataclasses.replace(self, red=red, s0=s0, grab=grab, fin=self.fin and red)

    def with_ctas(self, ctas: int) -> V5Config:
        """The same launch on `ctas` CTAs (0: one per SM)."""
        return dataclasses.replace(self, ctas=ctas)

    def with_fin(self) -> V5Config:
        """The same reduce-only launch with the in-kernel finalize (no wo_finalize kernel after it)."""
        return dataclasses.replace(self, red=True, fin=True)

    @property
    def rows(self) -> int:
        return 64 * self.mt * self.nwg - 16 * self.skip

    def grid(self, N: int, sms: int) -> int:
        """CTAs per launch: one per SM (stream-K), or cl per row group of the cluster builds."""
        return (N // self.rows) * self.cl if self.cl else (self.ctas or sms)

    @property
    def threads(self) -> int:
        return self.nwg * 128 + 32

    @property
    def smem(self) -> int:
        w_stage = (self.rows // 16) * (self.kc // self.bk) * block_bytes(self.bk)
        x_stage = (self.kc // 64) * self.tokp * 128
        # full barriers (per chunk, or per warpgroup) and empty ones
        bars = 8 * self.stages * ((self.kc // 64 if self.chunked else self.nwg if self.split else 1) + 1)
        return self.stages * (w_stage + x_stage) + bars + 1024  # + 1024 for the alignment

    def __str__(self) -> str:
        wk = ("_red" if self.red else "") + (f"_s0{self.s0}_g{self.grab}" if self.grab else "")
        wk += f"_cl{self.cl}" + (f"_skip{self.skip}" if self.skip else "") if self.cl else ""
        wk += f"_ctas{self.ctas}" if self.ctas else ""
        wk += {0: "", 1: "_diag_stream", 2: "_diag_decode", 5: "_diag_no_x", 6: "_diag_early_release",
               7: "_diag_no_decode", 8: "_diag_no_decode_fixed_b", 9: "_diag_no_decode_early_release",
               10: "_diag_plain_stores", 11: "_diag_no_partials", 12: "_diag_stream_no_x"}[self.diag] + (f"_bk{self.bk}" if self.bk != 256 else "") + (
            "_grp" if self.grouped else "") + (f"_lean{self.lean}" if self.lean else "") + ("_fin" if self.fin else "") + (
            "_prof" if self.prof else "")
        return (f"v5_n{self.tokp}_mt{self.mt}_wg{self.nwg}_kc{self.kc}_s{self.stages}_gs{self.gs}"
                f"_a{self.nacc}_b{self.nbuf}{wk}")


# Instantiated in kernels/wo_gemm_v5.cu, each with red = False and True.
V5_KERNELS = [
    V5Config(8, 1, 2, 512, 4, 4, 2, 4),
    V5Config(8, 1, 2, 512, 4, 2, 2, 2),
    V5Config(16, 1, 2, 512, 4, 2, 2, 2),
    V5Config(16, 1, 4, 256, 5, 2, 2, 2),
    V5Config(32, 1, 2, 256, 6, 2, 2, 2),
    V5Config(32, 1, 4, 256, 4, 2, 2, 2),
    V5Config(32, 1, 4, 256, 4, 2, 2, 4),
    V5Config(64, 1, 2, 256, 4, 2, 2, 2),
    V5Config(64, 1, 2, 256, 4, 1, 2, 4),
    V5Config(64, 1, 4, 256, 3, 2, 1, 2),
    V5Config(64, 2, 2, 256, 3, 1, 1, 2),
    V5Config(64, 1, 4, 256, 3, 1, 1, 4),
    # 7 consumer warpgroups (448 rows per unit, 2 stages; 8 would pass 1024 threads): more warps to hide
    # the wgmma and ring latencies, x read once per 448 weight rows (50 registers; TOKP 64 spills)
    # two m64 row blocks per warpgroup (two independent decode chains per warp); measured slower before the
    # wgmma serialization fix (commit 0f5bf4f), tried again after it
    V5Config(32, 2, 2, 256, 4, 2, 2, 2),
    V5Config(32, 2, 2, 256, 4, 2, 1, 2),
    V5Config(16, 1, 7, 256, 2, 2, 1, 2),
    V5Config(32, 1, 7, 256, 2, 2, 1, 2),
]
# Without a config: per TOKP the reduce-only static build measured fastest on an H100 (commit 5d74a0d,
# graph replay with wo_finalize: 33.99 us at M = 32, 40.97 us at M = 64; TOKP 8/16 are not dispatched).
V5_DEFAULTS = {8: V5Config(8, 1, 2, 512, 4, 2, 2, 2, True), 16: V5Config(16, 1, 2, 512, 4, 2, 2, 2, True),
               32: V5Config(32, 1, 4, 256, 4, 2, 2, 4, True), 64: V5Config(64, 1, 4, 256, 3, 2, 1, 2, True)}


# 128-k stream blocks: units of KC = 128, half-size stages, twice as many of them in the same shared memory.
# H100, commit bec7ddf: 30% slower than 256-k blocks at M = 32 and 64 (smaller copies); one build kept.
V5_KERNELS_BK128 = [V5Config(32, 1, 4, 128, 8, 2, 2, 2, bk=128)]
# Unit-grouped stream: each unit one contiguous run of memory (16 or 8 tiles x 2304 B). H100, commit 072c3bb:
# M = 32 GEMM kernel 29.2 us against 30.2 ungrouped; M = 64 unchanged.
V5_KERNELS_GROUPED = [V5Config(32, 1, 4, 256, 4, 2, 2, 2, grouped=True), V5Config(32, 2, 2, 256, 4, 2, 2, 2, grouped=True),
                      V5Config(64, 1, 2, 256, 4, 2, 2, 2, grouped=True), V5Config(64, 1, 4, 256, 3, 2, 1, 2, grouped=True)]
# Lean consumers (LEAN bit 0: precomputed wgmma descriptors, bit 1: scale pairs; same math, fewer
# instructions per decoded weight: SASS of the M = 32 build, per unit and warp, ~470 -> see the notes).
V5_KERNELS_LEAN = [V5Config(32, 1, 4, 256, 4, 2, 2, 2, grouped=True, lean=1),
                   V5Config(32, 1, 4, 256, 4, 2, 2, 2, grouped=True, lean=3),
                   V5Config(32, 1, 4, 256, 3, 2, 2, 2, grouped=True, lean=3),
                   V5Config(32, 1, 4, 256, 4, 2, 2, 4, grouped=True, lean=3),
                   V5Config(64, 1, 2, 256, 4, 2, 2, 2, grouped=True, lean=3),
                   V5Config(64, 1, 2, 256, 4, 1, 2, 4, grouped=True, lean=3),
                   V5Config(64, 1, 4, 256, 3, 2, 1, 2, grouped=True, lean=3),
                   V5Config(8, 1, 2, 512, 4, 2, 2, 2, lean=3),
                   V5Config(32, 1, 4, 256, 4, 2, 2, 2, grouped=True, lean=7),
                   V5Config(32, 1, 4, 256, 4, 4, 2, 2, grouped=True, lean=7),
                   V5Config(32, 2, 2, 256, 4, 2, 2, 2, grouped=True, lean=7),
                   V5Config(64, 1, 2, 256, 4, 2, 2, 2, grouped=True, lean=7),
                   V5Config(8, 1, 2, 512, 4, 2, 2, 2, lean=7),
                   # more shapes for the lean consumer: NACC 1 at M = 32, 256-row units at M = 64 (half the x
                   # bytes per weight byte; 3 stages), 4 warpgroups at TOKP 8 (5 stages)
                   V5Config(32, 1, 4, 256, 4, 2, 1, 2, grouped=True, lean=7),
                   V5Config(64, 2, 2, 256, 3, 1, 1, 2, grouped=True, lean=3),
                   V5Config(64, 1, 4, 256, 3, 2, 1, 2, grouped=True, lean=7),
                   V5Config(8, 1, 4, 256, 5, 2, 2, 2, grouped=True, lean=3),
                   # 128-k units from the grouped stream (each unit still one contiguous run: 18.4 KB at 256 rows),
                   # so twice the stages in the same shared memory and 27.15 units per SM instead of 13.58
                   V5Config(32, 1, 4, 128, 8, 2, 2, 2, bk=128, grouped=True, lean=7),
                   V5Config(64, 1, 4, 128, 6, 2, 1, 2, bk=128, grouped=True, lean=3),
                   # three groups in flight (NBUF 4, one accumulator set) at M = 32; the NBUF 4 builds above are
                   # serialized by ptxas (C7512), these two are not
                   V5Config(32, 1, 4, 256, 4, 2, 1, 4, grouped=True, lean=3),
                   V5Config(32, 1, 4, 256, 4, 1, 1, 4, grouped=True, lean=7),
                   # the unit's weight as one bulk copy (LEAN bit 3): the producer issues 5 copies per stage, not 20
                   # (M = 32) or 12 (M = 64)
                   V5Config(32, 1, 4, 256, 4, 2, 2, 2, grouped=True, lean=15),
                   V5Config(64, 1, 2, 256, 4, 2, 2, 2, grouped=True, lean=11),
                   # the prefetch after the chunk's first group (LEAN bit 4)
                   V5Config(32, 1, 4, 256, 4, 2, 2, 2, grouped=True, lean=23),
                   V5Config(64, 1, 2, 256, 4, 2, 2, 2, grouped=True, lean=23),
                   # the chunk-major stream with a full barrier per 64-k chunk (LEAN bit 5)
                   V5Config(32, 1, 4, 256, 4, 2, 2, 2, grouped=True, lean=39),
                   V5Config(32, 1, 4, 256, 4, 2, 2, 2, grouped=True, lean=35),
                   V5Config(64, 1, 2, 256, 4, 2, 2, 2, grouped=True, lean=35),
                   # the same, each chunk copied in 4-tile pieces (LEAN bit 6: 16 / 8 copies per stage, as grouped)
                   V5Config(32, 1, 4, 256, 4, 2, 2, 2, grouped=True, lean=103),
                   V5Config(64, 1, 2, 256, 4, 2, 2, 2, grouped=True, lean=99),
                   # the rotate word layout (LEAN bit 7: 8 integer instructions per code word instead of 11) on the
                   # builds recorded at M = 8, 32 and 64, and at M = 64 on 4 warpgroups (256-row units)
                   V5Config(8, 1, 2, 512, 4, 2, 2, 2, lean=131),
                   V5Config(8, 1, 2, 512, 4, 2, 2, 2, lean=135),
                   V5Config(32, 1, 4, 256, 4, 2, 2, 2, grouped=True, lean=135),
                   V5Config(64, 1, 2, 256, 4, 2, 2, 2, grouped=True, lean=131),
                   V5Config(64, 1, 2, 256, 4, 2, 2, 2, grouped=True, lean=139),
                   V5Config(64, 1, 4, 256, 3, 2, 1, 2, grouped=True, lean=135),
                   # the cross-unit prefetch (LEAN bit 8): the next stage tested during a unit's last chunk
                   V5Config(8, 1, 2, 512, 4, 2, 2, 2, lean=391),
                   V5Config(32, 1, 4, 256, 4, 2, 2, 2, grouped=True, lean=391),
                   V5Config(64, 1, 2, 256, 4, 2, 2, 2, grouped=True, lean=135),
                   V5Config(64, 1, 2, 256, 4, 2, 2, 2, grouped=True, lean=391),
                   # one full barrier per stage and warpgroup (LEAN bit 9): the first warpgroups start before the
                   # whole first stage is in
                   V5Config(8, 1, 2, 512, 4, 2, 2, 2, lean=647),
                   V5Config(32, 1, 4, 256, 4, 2, 2, 2, grouped=True, lean=647),
                   V5Config(64, 1, 2, 256, 4, 2, 2, 2, grouped=True, lean=643),
                   # the row-group test without a division (LEAN bit 10)
                   V5Config(8, 1, 2, 512, 4, 2, 2, 2, lean=1159),
                   V5Config(32, 1, 4, 256, 4, 2, 2, 2, grouped=True, lean=1159),
                   V5Config(64, 1, 2, 256, 4, 2, 2, 2, grouped=True, lean=1155),
                   V5Config(64, 1, 2, 256, 4, 2, 2, 2, grouped=True, lean=1159),
                   # ... with the cross-unit prefetch (bit 8), which waited behind the division before
                   V5Config(32, 1, 4, 256, 4, 2, 2, 2, grouped=True, lean=1415),
                   V5Config(64, 1, 2, 256, 4, 2, 2, 2, grouped=True, lean=1415),
                   # the fragment-major workspace (bit 11): each warp's red.add on whole lines
                   V5Config(8, 1, 2, 512, 4, 2, 2, 2, lean=2695),
                   V5Config(32, 1, 4, 256, 4, 2, 2, 2, grouped=True, lean=2695),
                   V5Config(64, 1, 2, 256, 4, 2, 2, 2, grouped=True, lean=3203),
                   # H200 (fifteenth pass): the builds its run chose (lean 1159 at M <= 8, 15 at M = 32, 3203 at
                   # M = 64) with the bits the H100's choices add: the fragment-major workspace (bit 11), the
                   # row-group multiply-high (10), the rotate layout (7), one copy per unit (3), the prefetch (2).
                   # A/B on an H200 (commit 46868e8, 5 rounds): M = 32 lean 2191 25.07 us, 3087 25.16, 143 25.66,
                   # 2063 26.30 against 26.89 for lean 15 (2695 28.55); M = 64 3211 34.93, 3207 36.48 against 34.99
                   V5Config(8, 1, 2, 512, 4, 2, 2, 2, lean=3207),
                   *[V5Config(32, 1, 4, 256, 4, 2, 2, 2, grouped=True, lean=n) for n in (2063, 3087, 143, 2191, 3215)],
                   # ... and at M <= 8 on the grouped 256-k stream (one copy per unit needs it): 2 warpgroups with
                   # 8 stages, 4 with 5
                   *[V5Config(8, 1, nwg, 256, st, 2, 2, 2, grouped=True, lean=3215) for nwg, st in ((2, 8), (4, 5))],
                   # A/B on an H200 (commit b8569d9, static on 132 CTAs): M = 8 21.64 us (4 warpgroups) and 22.80 (2)
                   # against 22.09 for lean 1159; M = 1 21.77 and 23.01 against 22.09.
                   # Neighbours of lean 3215: the cross-unit prefetch (bit 8) and the late prefetch (bit 4) at
                   # M = 32; at M = 64 on 2 warpgroups and on 4 (256-row units: half the x bytes per weight byte)
                   *[V5Config(32, 1, 4, 256, 4, 2, 2, 2, grouped=True, lean=n) for n in (3471, 3231)],
                   V5Config(64, 1, 4, 256, 3, 2, 1, 2, grouped=True, lean=3215),
                   V5Config(64, 1, 2, 256, 4, 2, 2, 2, grouped=True, lean=3215),
                   # record run on an H200 (commit 08c271f): lean 3215 chosen at every M <= 64 (M = 64 31.84 us against
                   # 34.24 for 3211; M = 32 24.01 against 24.75 for 3471 and 26.43 for 3231; 4 warpgroups at M = 64
                   # 35.70). Its neighbours in the other parameters: groups of 4, one accumulator set, 3 stages, the
                   # cross-unit prefetch at M = 64 and 8 (groups of 4 at M = 8 are serialized by ptxas, C7512: not kept)
                   *[V5Config(32, 1, 4, 256, st, gs, nacc, 2, grouped=True, lean=3215)
                     for st, gs, nacc in ((4, 4, 2), (4, 2, 1), (3, 2, 2))],
                   V5Config(64, 1, 2, 256, 4, 2, 2, 2, grouped=True, lean=3471),
                   V5Config(64, 1, 2, 256, 4, 2, 1, 2, grouped=True, lean=3215),
                   *[V5Config(8, 1, 4, 256, 5, 2, nacc, 2, grouped=True, lean=n) for nacc, n in ((2, 3471), (1, 3215))],
                   *[V5Config(64, 1, 2, 256, 4, 2, 2, 2, grouped=True, lean=n) for n in (3211, 3207)],
                   # sixteenth pass (H200): the recorded builds with the ramp (LEAN bits 12-13: the producer issues
                   # RAMP units, then waits for stage 0 to fill before it issues the rest). A/B on an H200 (commit
                   # 735408f, 5 rounds), M = 1 / 8 / 32 / 64: RAMP 2 (lean 11407) 21.67 / 21.41 / 24.16 / 31.99 us, a
                   # tie with lean 3215's 21.81 / 21.44 / 24.18 / 32.03; RAMP 1 (lean 7311, not kept) lost 0.2-0.7 us
                   *[V5Config(m, 1, nwg, 256, st, 2, 2, 2, grouped=True, lean=11407)
                     for m, nwg, st in ((8, 4, 5), (32, 4, 4), (64, 2, 4))],
                   # the first unit issued in the prologue (LEAN bit 14): the H200 timeline of lean 3215 has the
                   # producer's first copy ~1.0k cycles after its start (its code sits after the consumers')
                   *[V5Config(m, 1, nwg, 256, st, 2, 2, 2, grouped=True, lean=lean + 16384)
                     for m, nwg, st in ((8, 4, 5), (32, 4, 4), (64, 2, 4)) for lean in (3215, 11407)],
                   # ... with three groups in flight (NBUF 4: each group decoded two ahead of the wgmma that waits),
                   # for the H200's latency-bound consumer. A/B on an H200 (a1a8a09, 5 rounds): one accumulator set
                   # 20.91 / 20.98 us at M = 8 / 1 against 20.96 / 21.19 for NBUF 2; two sets (not kept) 21.58 / 21.38.
                   # At M = 32 ptxas serializes it (C7512: not kept)
                   V5Config(8, 1, 4, 256, 5, 2, 1, 4, grouped=True, lean=19599)]
# Cluster builds (CL, reduce only, instantiated once): 224-row units (the last warpgroup's last SKIP warps decode a
# copy of the last tile), 32 row groups x cl CTAs = 128 CTAs, each a 1/cl slice of k for one row group, summed over
# distributed shared memory: every output written once as bf16, no fp32 workspace, no red.add flush, no wo_finalize.
# At M = 64 also 112-row units on 2 warpgroups in pairs (64 clusters of 2).
V5_KERNELS_CLUSTER = [V5Config(32, 1, 4, 256, 4, 2, 2, 2, True, grouped=True, lean=135, cl=4, skip=2),
                      V5Config(64, 1, 4, 256, 3, 2, 1, 2, True, grouped=True, lean=135, cl=4, skip=2),
                      V5Config(64, 2, 2, 256, 3, 1, 1, 2, True, grouped=True, lean=131, cl=4, skip=2),
                      V5Config(64, 1, 2, 256, 4, 2, 2, 2, True, grouped=True, lean=131, cl=2, skip=1),
                      V5Config(8, 1, 4, 256, 5, 2, 2, 2, True, grouped=True, lean=135, cl=4, skip=2),
                      # 256-row units, 28 row groups x 4 = 112 CTAs (an H100 / H200 runs 30 clusters of 4, not the 32
                      # the 224-row builds need): 16 units per CTA instead of 13-14, on a 1/112 share of the bandwidth
                      V5Config(32, 1, 4, 256, 4, 2, 2, 2, True, grouped=True, lean=135, cl=4),
                      V5Config(64, 2, 2, 256, 3, 1, 1, 2, True, grouped=True, lean=131, cl=4),
                      V5Config(64, 1, 4, 256, 3, 2, 1, 2, True, grouped=True, lean=135, cl=4),
                      V5Config(8, 1, 4, 256, 5, 2, 2, 2, True, grouped=True, lean=135, cl=4)]

V5_DIAGNOSTICS = [V5Config(32, 1, 4, 256, 4, 2, 2, 2, True, diag=d) for d in (1, 2)] + [
    V5Config(32, 1, 4, 256, st, 2, 2, 2, True, diag=d, grouped=True, lean=3) for d, st in ((1, 4), (1, 3), (1, 2), (5, 4),
                                                                                          (6, 4))] + [
    V5Config(64, 1, 2, 256, 4, 2, 2, 2, True, diag=d, grouped=True, lean=3) for d in (1, 2, 5, 7)] + [
    V5Config(32, 1, 4, 256, 4, 2, 1, 2, True, diag=7, grouped=True, lean=7)] + [
    # the recorded M = 32 / 64 builds with the partials stored plainly (10) or not at all (11): the red.add's cost
    V5Config(m, 1, nwg, 256, 4, 2, 2, 2, True, diag=d, grouped=True, lean=lean)
    for m, nwg, lean in ((32, 4, 2695), (64, 2, 3203)) for d in (10, 11)] + [
    # the H200 record's builds (lean 3215, one copy per unit) streaming only (1), streaming only without x (12),
    # without x in the full kernel (5) and without their partials (11); at M = 8 also the same stream with 4 copies
    # per unit (lean 3)
    V5Config(m, 1, nwg, 256, st, 2, nacc, 2, True, diag=d, grouped=True, lean=lean)
    for m, nwg, st, nacc in ((8, 4, 5, 2), (32, 4, 4, 2), (64, 2, 4, 1)) for d in (1, 12, 5, 11) for lean in (3215,)] + [
    V5Config(8, 1, 4, 256, 5, 2, 2, 2, True, diag=1, grouped=True, lean=3)]

# Timeline builds (PROF; kernels/wo_gemm_v5.cu prof_table): the recorded M = 32 / 64 builds, groups of 4 at M = 32,
# no-decode builds (DIAG 7 as in the ring, 8 with B from one fixed tile, 9 with stages released at issue; one
# accumulator set at M = 32: ptxas serializes the two-set ones, C7512), and the NBUF 4 builds.
V5_TIMELINES = [V5Config(32, 1, 4, 256, 4, gs, 2 if d == 0 else 1, 2, True, diag=d, grouped=True, lean=7, prof=True)
                for gs, d in ((2, 0), (4, 0), (2, 7), (2, 8), (2, 9))] + [
    V5Config(32, 1, 4, 256, 4, 2, 1, 4, True, grouped=True, lean=3, prof=True),
    V5Config(32, 1, 4, 256, 4, 1, 1, 4, True, grouped=True, lean=7, prof=True),
    V5Config(32, 1, 4, 256, 4, 2, 2, 2, True, grouped=True, lean=15, prof=True),
    V5Config(64, 1, 2, 256, 4, 2, 2, 2, True, grouped=True, lean=11, prof=True),
    V5Config(32, 1, 4, 256, 4, 2, 2, 2, True, grouped=True, lean=23, prof=True),
    V5Config(64, 1, 2, 256, 4, 2, 2, 2, True, grouped=True, lean=23, prof=True),
    V5Config(32, 1, 4, 256, 4, 2, 2, 2, True, grouped=True, lean=39, prof=True),
    V5Config(32, 1, 4, 256, 4, 2, 2, 2, True, grouped=True, lean=35, prof=True),
    V5Config(64, 1, 2, 256, 4, 2, 2, 2, True, grouped=True, lean=35, prof=True)] + [
    V5Config(m, 1, nwg, 256, 4, 2, 2, 2, True, grouped=True, lean=lean, prof=True)
    for m, nwg, lean in ((32, 4, 519), (64, 2, 515), (32, 4, 1031), (64, 2, 1027))] + [
    V5Config(64, 1, 2, 256, 4, 2, 2, 2, True, diag=d, grouped=True, lean=3, prof=True) for d in (0, 7)] + [
    # the H200 record's builds (sixteenth pass)
    V5Config(m, 1, nwg, 256, st, 2, 2, 2, True, grouped=True, lean=3215, prof=True)
    for m, nwg, st in ((8, 4, 5), (32, 4, 4), (64, 2, 4))]
PROF_SLOTS = 512  # u64 stamps per CTA


def v5_timeline(x: torch.Tensor, pw: PreparedWeight, config: V5Config, out: torch.Tensor | None = None):
    """Launch a timeline build (config.prof) like w4a16_gemm_v5 (reduce-only, then wo_finalize) with its own
    counters and stamp table. Returns (out bf16 [M, N] (wrong for DIAG builds), stamps int64 [SMs, 512]): see
    prof_table in kernels/wo_gemm_v5.cu for the slots (clock64 except slot 0, globaltimer in ns)."""
    from ..runtime import get_kernel
    from ..runtime.tma import launch_by_value, tensor_map_2d

    if not (config.prof and config.red and not config.grab and not config.fin):
        raise InputError(f"config: expected a static reduce-only timeline build (prof=True), got {config}")
    M, N, K = check_gemm_input(x, pw, V5_MAX_M, "the v5 kernel")
    out = gemm_output(out, x, M, N)
    stream = v5_stream(pw, *config.stream_args())
    ws, _ = _workspace(x.device, N, config.tokp, N // 16 + 4)
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count
    off = ((N // 16 + 8) & ~1) // 2  # in u64
    table = torch.zeros(off + PROF_SLOTS * sms, dtype=torch.int64, device=x.device)
    launch_by_value(get_kernel("wo_gemm_v5", config.expr), sms, config.threads,
                    (tensor_map_2d(x, config.tokp, 64), stream, pw.global_scale, out, ws, table, M, N, K, 0, 0, 0),
                    shared_mem=config.smem)
    finalize(ws, pw.global_scale, out, config.tokp, WS_UNIT_PAIRS if config.scale_pairs else WS_UNIT,
             frag=config.frag_ws)  # the build's own workspace order (LEAN bit 11: fragment-major)
    return out, table[off:].view(sms, PROF_SLOTS)


def v5_tokp_for(M: int) -> int:
    for n in (8, 16, 32, 64):
        if M <= n:
            return n
    raise InputError(f"x.shape[0] (M): the v5 kernel serves M <= {V5_MAX_M}, got {M}")


def v5_candidates(M: int, sms: int = 132) -> list[V5Config]:
    """The kernels whose TOKP suits M: static stream-K with the in-kernel fixup, reduce-only (red) static,
    and red with dynamic grabs of one unit after a static part of 1/2 or 3/4 of the average share; at
    TOKP >= 32 only grabs of 2 units after 3/4 (H100, commit 3571948: grabs of 1, 2 or 4 units after 1/2
    or 3/4 of the share were all 7-60% slower than the static red build at M = 32 and 64)."""
    n = v5_tokp_for(M)
    out = []
    for k in V5_KERNELS + [c for c in V5_KERNELS_LEAN if c.tokp < 32]:
        if k.tokp != n:
            continue
        share = k.units / sms
        works = [(0.5, 1), (0.75, 1)] if n < 32 else [(0.75, 2)]
        out += [k, k.with_work(True)] + [k.with_work(True, max(1, int(f * share)), gsz) for f, gsz in works]
    out += [w for k in V5_KERNELS_BK128 + V5_KERNELS_GROUPED + [c for c in V5_KERNELS_LEAN if c.tokp >= 32]
            if k.tokp == n for w in (k, k.with_work(True))]
    # static reduce launches of the rotate-layout lean builds on a CTA count that divides their units (even shares)
    out += [k.with_work(True).with_ctas(even_ctas(k.units, sms)) for k in V5_KERNELS_LEAN
            if k.tokp == n and k.lean & 128 and even_ctas(k.units, sms) not in (0, sms)]
    out += [k for k in V5_KERNELS_CLUSTER if k.tokp == n]
    # (with_fin(), the in-kernel finalize, is not a candidate: 0.9-1.1 us slower per call at M = 8, 32 and 64
    # on an H100, commit 8bfe00d; docs/notes_wo_gemm.md, eighth pass)
    return out


def even_ctas(units: int, sms: int) -> int:
    """The largest CTA count <= sms that divides `units` (every CTA the same static share), or 0 when it would
    leave more than a tenth of the SMs idle. The wo shape's 1792 units (M = 8 and 32) or 3584 (M = 64) on a
    132-SM H100: 128 CTAs of 14 or 28 units, where 132 give 76 CTAs one unit more than the other 56."""
    best = next(c for c in range(min(units, sms), 0, -1) if units % c == 0)
    return best if best >= 0.9 * sms else 0


def check_ctas(cfg: V5Config, sms: int) -> None:
    if cfg.ctas and (cfg.cl or not 0 < cfg.ctas <= sms):
        raise InputError(f"config {cfg}: ctas must be 1..{sms} (the SMs of this GPU, one CTA each) and not with a "
                         f"cluster build, got ctas = {cfg.ctas}")


def check_cluster(cfg: V5Config, K: int) -> None:
    """A cluster build (cfg.cl > 0) is a static reduce build over the grouped stream whose k blocks split evenly
    over the cluster, so each CTA's units lie in one row group."""
    if not cfg.cl:
        if cfg.skip:
            raise InputError(f"config {cfg}: skip > 0 needs a cluster build (cl > 0)")
        return
    if not (cfg.red and cfg.grouped and not cfg.grab and not cfg.fin and not cfg.prof and cfg.diag == 0):
        raise InputError(f"config {cfg}: a cluster build needs red=True, grouped=True, static work, no fin, prof or diag")
    if (K // cfg.kc) % cfg.cl:
        raise InputError(f"config {cfg}: K / kc = {K // cfg.kc} k blocks must split over cl = {cfg.cl} CTAs")


def default_v5_config(M: int) -> V5Config:
    return V5_DEFAULTS[v5_tokp_for(M)]


def w4a16_gemm_v5(x: torch.Tensor, pw: PreparedWeight, config: V5Config | None = None,
                  out: torch.Tensor | None = None, enable_pdl: bool = False) -> torch.Tensor:
    """Fused NVFP4 W4A16 GEMM on warpgroup tensor cores: x bf16 [M, K] (M <= 64) @ dequant(W)^T ->
    bf16 [M, N]. pw: a PreparedWeight (its v5 stream is built on first use). enable_pdl: launch the GEMM
    with programmatic dependent launch, so its first weight copies overlap the previous kernel's tail (it
    reads x and writes the workspace only after griddepcontrol.wait; a call that builds the stream launches
    without PDL)."""
    from ..runtime import get_kernel
    from ..runtime.tma import launch_by_value, max_active_clusters, tensor_map_2d

    M, N, K = check_gemm_input(x, pw, V5_MAX_M, "the v5 kernel")
    cfg = config or default_v5_config(M)
    if cfg.tokp < M:
        raise InputError(f"config {cfg}: serves M <= {cfg.tokp}, got M = {M}")
    if N % cfg.rows or K % cfg.kc:
        raise InputError(f"w.shape: expected N % {cfg.rows} == 0 and K % {cfg.kc} == 0 for config {cfg}, got {[N, K]}")
    out = gemm_output(out, x, M, N)
    check_work(cfg)
    check_cluster(cfg, K)
    if cfg.frag_ws and cfg.fin:
        raise InputError(f"config {cfg}: the fragment-major workspace (LEAN bit 11) has no in-kernel finalize (fin)")
    fresh = not v5_stream_ready(pw, *cfg.stream_args())
    stream = v5_stream(pw, *cfg.stream_args())
    enable_pdl = enable_pdl and not fresh  # a stream built just now is not safe to read before the PDL wait
    ws, cnt = _workspace(x.device, N, cfg.tokp, N // 16 + 4)  # tile counters, grab counters, fin's barrier
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count
    func = get_kernel("wo_gemm_v5", cfg.expr)
    check_ctas(cfg, sms)
    if cfg.lean & 1024 and (N // cfg.rows) * (K // cfg.kc) ** 2 >= 2**32:  # FASTRG's multiply-high row group
        raise InputError(f"w.shape: config {cfg} needs (N / {cfg.rows}) (K / {cfg.kc})^2 < 2^32, got N, K = {N}, {K}")
    grid = cfg.grid(N, sms)
    if cfg.cl and grid > cfg.cl * max_active_clusters(func, cfg.cl, cfg.threads, cfg.smem):
        raise InputError(f"config {cfg}: {grid // cfg.cl} clusters of {cfg.cl} CTAs must run at once on this GPU; "
                         f"it runs {max_active_clusters(func, cfg.cl, cfg.threads, cfg.smem)}")
    launch_by_value(func, grid, cfg.threads,
                    (tensor_map_2d(x, cfg.tokp, 64), stream, pw.global_scale, out, ws, cnt, M, N, K, cfg.s0,
                     cfg.grab, int(cfg.fin)), shared_mem=cfg.smem, enable_pdl=enable_pdl, cluster=cfg.cl)
    if cfg.red and not cfg.fin and not cfg.cl:
        finalize(ws, pw.global_scale, out, cfg.tokp, WS_UNIT_PAIRS if cfg.scale_pairs else WS_UNIT, frag=cfg.frag_ws)
    return out
