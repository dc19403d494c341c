"""MoE tail fusions: the top-k reduce with the shared-expert add, and expand-input-rows with the memset and
the scale swizzle folded in (blog Part 3 "other fusions"; techniques.md 8.1, 8.3, 8.4, layout 1.4).

Idea. (1) After the combine, every token has top-k expert rows y[t, k, :]; eager PyTorch weights them,
sums them and adds the shared expert's row in three kernels with bf16 intermediates. One kernel reads the
k rows, the shared row and the k router weights once, accumulates in fp32 and writes one bf16 row. With
the low-precision combine the rows arrive as NVFP4 (per-row global scale, techniques.md 2.1); the fused
kernel dequantizes them in registers, so the bf16 rows are never written. (2) Before the FC1 grouped GEMM,
expandInputRows permutes the token rows into expert order. Fusing into it the zero-fill of the MoE output
(that FC2's finalize epilogue accumulates into) and the write of the NVFP4 scales straight into each
expert's 128x4 swizzled layout removes a memset and a swizzle pass.

Bytes model (H = hidden, K = top-k, T tokens, R = T*K expanded rows, E local experts):
- reduce, fused bf16: read T*K*H*2 (y) + T*H*2 (shared) + T*K*4 (w), write T*H*2.
  eager: y*w writes and re-reads a [T, K, H] bf16 temporary, the sum writes [T, H], the add re-reads it.
- reduce, fused NVFP4: read T*K*(H/2 + H/16 + 4) (codes, scales, global scale) instead of T*K*H*2;
  dequantize-then-reduce writes and re-reads T*K*H*2 bf16 in between.
- expand, fused: read T*(H/2 + H/16) (each source row once; repeats hit L2) + indices, write R*H/2 codes +
  sum_e roundup128(count_e) * pad4(H/16) scale bytes + T*H*2 zeros. Unfused: the scales are written
  linear into a padded staging buffer, read again and written swizzled, and the memset is its own pass.
Bounds: bytes / measured copy bandwidth (bench.ceilings).

Variants (story order). Reduce: `eager` (mul, sum, add: the baseline), `torch_compile` (Inductor, one
kernel, fp32 math, dynamic=True: what TRT-LLM ships, PR 7422), `torch_compile_static` (the same with
dynamic=False, one specialized kernel per T), `optimized` (kernels/moe_tail.cu moe_reduce_bf16),
`dequant_then_reduce` (NVFP4 rows -> bf16 rows kernel, then `optimized`), `optimized_nvfp4_v1` (fused, the
scalar e2m1 decode of wb_nvfp4.cuh), `optimized_nvfp4` (fused, two codes per f16x2 bit trick).
Expand: `unfused` (index_select codes, index_select scales into a padded linear staging buffer, one
permute-copy into the swizzled layout, memset: the baseline), `optimized` (moe_expand_rows_nvfp4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..model import R1
from ..runtime import InputError, check_multiple, check_tensor, get_kernel, launch
from . import nvfp4

# nvfp4.py provides only the validation reference and the NVFP4Tensor container (no timed code), so it is
# left out: its kernels changing must not mark these numbers stale. The kernel's headers are included.
SOURCES = ("workbench/techniques/moe_tail.py", "moe_tail")

TOPK = R1.top_k  # 8
HIDDEN = R1.hidden  # 7168
CASE_TOKENS = (32, 256, 1024, 4096)
EXPAND_EXPERTS = R1.num_experts // 8  # 32 local experts: EP 8, one H100/H200 node
REDUCE_TOPK = (4, 8)  # instantiations of the reduce kernels in kernels/moe_tail.cu
EXPAND_MAX_EXPERTS = 1024  # shared-memory table size of moe_expand_rows_nvfp4
ROW_TILE = 128  # rows of one swizzled scale tile
ULP_FLOOR = 2.0**-20  # see reduce_error


def _pad(n: int, m: int) -> int:
    return (n + m - 1) // m * m


# ---------------------------------------------------------------------------------------------------
# Part 1: top-k reduce + shared-expert add
# ---------------------------------------------------------------------------------------------------

def make_reduce_inputs(num_tokens: int, hidden: int = HIDDEN, top_k: int = TOPK, seed: int = 0, device="cuda",
                       with_nvfp4: bool = True) -> dict:
    """Fresh random combine outputs for `num_tokens` tokens.

    Returns y bf16 [T, K, H] (expert rows ~ N(0, 1), every 97th column x8 as outliers), w fp32 [T, K]
    (router weights: positive, normalized over the top-k, times R1's routed scaling 2.5), shared bf16
    [T, H] (the shared expert's row), and, with `with_nvfp4`, yq: y as NVFP4 rows [T*K, H] with linear
    scales and a per-row global scale (nvfp4.quantize_reference(..., global_scale="row"): the payload of
    the low-precision combine).
    """
    dev = torch.device(device)
    g = torch.Generator(device=dev).manual_seed(seed)
    y = torch.randn(num_tokens, top_k, hidden, generator=g, device=dev)
    y[..., ::97] *= 8.0
    scores = torch.rand(num_tokens, top_k, generator=g, device=dev) + 0.05
    w = (scores / scores.sum(dim=-1, keepdim=True) * R1.routed_scaling).float()
    shared = torch.randn(num_tokens, hidden, generator=g, device=dev)
    out = {"y": y.to(torch.bfloat16), "w": w.contiguous(), "shared": shared.to(torch.bfloat16)}
    del y
    if with_nvfp4:
        check_multiple("hidden (H)", hidden, nvfp4.BLOCK)
        out["yq"] = nvfp4.quantize_reference(out["y"].view(num_tokens * top_k, hidden), global_scale="row")
    return out


def reduce_reference_fp64(y: torch.Tensor, w: torch.Tensor, shared: torch.Tensor,
                          chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """fp64 shared + sum_k w*y, and the magnitude sum |shared| + sum_k |w*y| (for the ulp floor).

    y: [T, K, H] (any float dtype), w: [T, K], shared: [T, H]. Returns two fp64 [T, H]. Works in token
    chunks so the fp64 temporaries stay small.
    """
    T = y.shape[0]
    ref = torch.empty(shared.shape, dtype=torch.float64, device=shared.device)
    mag = torch.empty_like(ref)
    for t0 in range(0, T, chunk):
        sl = slice(t0, min(T, t0 + chunk))
        terms = y[sl].double() * w[sl].double()[..., None]
        s = shared[sl].double()
        ref[sl] = s + terms.sum(dim=1)
        mag[sl] = s.abs() + terms.abs().sum(dim=1)
    return ref, mag


def reference(y: torch.Tensor, w: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
    """out [T, H] bf16 = bf16(fp32(shared + sum_k w[t, k] * y[t, k, :])), the sum taken in fp64.

    y: [T, K, H] (bf16, or fp32 dequantized NVFP4 rows), w: fp32 [T, K], shared: bf16 [T, H]. Any device.
    """
    _check_reduce_shapes(y, w, shared)
    return reduce_reference_fp64(y, w, shared)[0].float().to(torch.bfloat16)


def reduce_eager(y: torch.Tensor, w: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
    """What a PyTorch user writes: weight in bf16, sum over top-k, then add the shared row (3 kernels)."""
    routed = (y * w.unsqueeze(-1).to(y.dtype)).sum(dim=1)
    return shared + routed


def _reduce_fp32(y: torch.Tensor, w: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
    return (shared.float() + (y.float() * w.unsqueeze(-1)).sum(dim=1)).to(torch.bfloat16)


def _reduce_fp32_static(y: torch.Tensor, w: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
    # Same body, its own code object: dynamo caches compiled graphs per code object, and a dynamic graph's
    # guards would otherwise also serve the static wrapper.
    return (shared.float() + (y.float() * w.unsqueeze(-1)).sum(dim=1)).to(torch.bfloat16)


_COMPILED: dict[bool, object] = {}


def reduce_compiled(y: torch.Tensor, w: torch.Tensor, shared: torch.Tensor, dynamic: bool = True) -> torch.Tensor:
    """The same sum in fp32 through torch.compile: dynamic=True is TRT-LLM's setting for
    moe_reduce_add_shared_output (one graph for every T); dynamic=False specializes on each shape."""
    if dynamic not in _COMPILED:
        _COMPILED[dynamic] = torch.compile(_reduce_fp32 if dynamic else _reduce_fp32_static, dynamic=dynamic)
    return _COMPILED[dynamic](y, w, shared)


def _check_reduce_shapes(y, w, shared) -> tuple[int, int, int]:
    check_tensor("y", y, ndim=3)
    T, K, H = y.shape
    check_tensor("w", w, dtype=torch.float32, shape=[T, K])
    check_tensor("shared", shared, shape=[T, H])
    return T, K, H


_SMS: dict[int, int] = {}


def _sm_count() -> int:
    idx = torch.cuda.current_device()
    if idx not in _SMS:
        _SMS[idx] = torch.cuda.get_device_properties(idx).multi_processor_count
    return _SMS[idx]


def _grid(n_items: int, threads: int, blocks_per_sm: int) -> int:
    """Persistent grid: enough blocks for the work, at most blocks_per_sm per SM."""
    return max(1, min((n_items + threads - 1) // threads, _sm_count() * blocks_per_sm))


def _check_topk(K: int) -> None:
    if K not in REDUCE_TOPK:
        raise InputError(f"top-k (y.shape[1] / w.shape[1]): expected one of {list(REDUCE_TOPK)}, got {K}")


def reduce_optimized(y: torch.Tensor, w: torch.Tensor, shared: torch.Tensor,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """Fused reduce + shared add (kernels/moe_tail.cu moe_reduce_bf16): one read of each input, fp32 sums,
    one bf16 rounding. y bf16 [T, K, H], w fp32 [T, K], shared bf16 [T, H], out bf16 [T, H] (optional);
    all CUDA, contiguous, 16-byte aligned; H % 8 == 0, K in REDUCE_TOPK."""
    T, K, H = _check_reduce_shapes(y, w, shared)  # shapes first: the clearest message
    check_multiple("H (y.shape[2])", H, 8)
    _check_topk(K)
    check_tensor("y", y, dtype=torch.bfloat16, device="cuda", ndim=3, contiguous=True, align_bytes=16)
    check_tensor("w", w, dtype=torch.float32, device="cuda", shape=[T, K], contiguous=True)
    check_tensor("shared", shared, dtype=torch.bfloat16, device="cuda", shape=[T, H], contiguous=True,
                 align_bytes=16)
    if out is None:
        out = torch.empty_like(shared)
    check_tensor("out", out, dtype=torch.bfloat16, device="cuda", shape=[T, H], contiguous=True, align_bytes=16)
    n = T * (H // 8)
    if n >= 2**31:
        raise InputError(f"y: expected T * H/8 < 2^31, got {n}")
    if n:
        launch(get_kernel("moe_tail", f"moe_reduce_bf16<{K}>"), _grid(n, 256, 4), 256,
               (y, w, shared, out, T, H // 8))
    return out


def _check_nvfp4_rows(yq: nvfp4.NVFP4Tensor, rows: int | None = None) -> tuple[int, int]:
    """yq: NVFP4 rows [M, H] with linear scales and a per-row global scale, on CUDA."""
    if not isinstance(yq, nvfp4.NVFP4Tensor):
        raise InputError(f"yq: expected an nvfp4.NVFP4Tensor, got {type(yq).__name__}")
    M, H = yq.shape
    check_multiple("H (yq.shape[1])", H, nvfp4.BLOCK)
    if rows is not None and M != rows:
        raise InputError(f"yq: expected {rows} rows (T * top-k), got {M}")
    if yq.layout != "linear":
        raise InputError(f"yq.layout: expected 'linear' (the combine ships linear scales), got {yq.layout!r}")
    check_tensor("yq.codes", yq.codes, dtype=torch.uint8, device="cuda", shape=[M, H // 2], contiguous=True,
                 align_bytes=16)
    check_tensor("yq.scales", yq.scales, dtype=torch.uint8, device="cuda", shape=[M, H // 16], contiguous=True)
    check_tensor("yq.global_scale", yq.global_scale, dtype=torch.float32, device="cuda", shape=[M],
                 contiguous=True)
    if M * (H // 16) >= 2**31:
        raise InputError(f"yq: expected rows * H/16 < 2^31, got {M * (H // 16)}")
    return M, H


def dequantize_rows_bf16(yq: nvfp4.NVFP4Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """NVFP4 rows (linear scales, per-row global scale) -> bf16 [M, H] with kernels/moe_tail.cu
    nvfp4_rows_dequant_bf16; bit-equal to dequantize_reference(yq).bfloat16()."""
    M, H = _check_nvfp4_rows(yq)
    if out is None:
        out = torch.empty(M, H, dtype=torch.bfloat16, device=yq.codes.device)
    check_tensor("out", out, dtype=torch.bfloat16, device="cuda", shape=[M, H], contiguous=True, align_bytes=16)
    n = M * (H // 16)
    if n:
        launch(get_kernel("moe_tail", "nvfp4_rows_dequant_bf16"), _grid(n, 256, 8), 256,
               (yq.codes, yq.scales, yq.global_scale, out, M, H // 16))
    return out


def reduce_dequant_then_reduce(yq: nvfp4.NVFP4Tensor, w: torch.Tensor, shared: torch.Tensor,
                               out: torch.Tensor | None = None, scratch: torch.Tensor | None = None):
    """Unfused NVFP4 path: dequantize the rows to bf16 (written to memory), then the fused bf16 reduce."""
    T, K = w.shape
    y = dequantize_rows_bf16(yq, scratch)
    return reduce_optimized(y.view(T, K, -1), w, shared, out)


def reduce_optimized_nvfp4(yq: nvfp4.NVFP4Tensor, w: torch.Tensor, shared: torch.Tensor,
                           out: torch.Tensor | None = None, version: int = 2) -> torch.Tensor:
    """Fused NVFP4 dequant + reduce + shared add (kernels/moe_tail.cu moe_reduce_nvfp4<K, version>).

    yq: NVFP4 rows [T*K, H] (row t*K + k is y[t, k]; linear scales; per-row global scale g, value =
    e2m1 * sf / g), w fp32 [T, K], shared bf16 [T, H]; H % 16 == 0. version 1 decodes with wb_nvfp4.cuh's
    e2m1_decode, version 2 with the f16x2 bit trick (same values).
    """
    check_tensor("w", w, dtype=torch.float32, ndim=2)
    T, K = w.shape
    _check_topk(K)
    M, H = _check_nvfp4_rows(yq, rows=T * K)
    check_tensor("w", w, dtype=torch.float32, device="cuda", ndim=2, contiguous=True)
    check_tensor("shared", shared, dtype=torch.bfloat16, device="cuda", shape=[T, H], contiguous=True,
                 align_bytes=16)
    if version not in (1, 2) or (version == 1 and K != 8):
        raise InputError(f"version: expected 2 (any top-k) or 1 (top-k 8), got {version} with top-k {K}")
    if out is None:
        out = torch.empty_like(shared)
    check_tensor("out", out, dtype=torch.bfloat16, device="cuda", shape=[T, H], contiguous=True, align_bytes=16)
    n = T * (H // 16)
    if n:
        launch(get_kernel("moe_tail", f"moe_reduce_nvfp4<{K}, {version}>"), _grid(n, 256, 3), 256,
               (yq.codes, yq.scales, yq.global_scale, w, shared, out, T, H // 16))
    return out


def reduce_error(out: torch.Tensor, ref64: torch.Tensor, mag64: torch.Tensor) -> dict:
    """Error of a bf16 output against the fp64 reference, in bf16 ulps and as relative L2.

    max_ulp: max |out - bf16(fp32(ref))| / u, where u is one bf16 ulp of the rounded reference, floored at
    2^-20 * (|shared| + sum_k |w y|). Why the floor: fp32 accumulation of 9 terms can be off by up to
    ~9 * 2^-24 of the magnitude sum, which is a rounding of the inputs' scale, not of the (possibly
    cancelled, tiny) result; without the floor a near-zero output would count fp32 noise as bf16 ulps.
    A kernel with fp32 sums and one bf16 rounding lands at max_ulp <= 1 (two roundings can straddle).
    rel_l2: ||out - ref|| / ||ref||.
    """
    ref_bf = ref64.float().to(torch.bfloat16).double()
    exp = torch.frexp(ref_bf.abs().float()).exponent
    ulp = torch.ldexp(torch.ones_like(ref_bf), (exp - 8).clamp(min=-133))
    denom = torch.maximum(ulp, ULP_FLOOR * mag64)
    o = out.double()
    err = ((o - ref_bf).abs() / denom)
    finite = bool(torch.isfinite(o).all())
    rel = float((o - ref64).norm() / ref64.norm()) if finite else float("inf")
    return {"max_ulp": float(err.max()) if finite else float("inf"), "rel_l2": rel, "finite": finite}


def validate_reduce(out: torch.Tensor, ref64: torch.Tensor, mag64: torch.Tensor, exact: bool) -> dict:
    """Pass rules: fused kernels (`exact`: fp32 sums, one rounding) max_ulp <= 1; variants with bf16
    intermediates (eager's bf16 products, dequantize-then-reduce's bf16 rows) rel_l2 <= 1e-2 (a few bf16
    roundings of 2^-9 each, techniques.md 8.1: rtol 1e-2)."""
    e = reduce_error(out, ref64, mag64)
    e["passed"] = e["finite"] and (e["max_ulp"] <= 1.0 if exact else e["rel_l2"] <= 1e-2)
    return e


def reduce_bytes(T: int, H: int = HIDDEN, K: int = TOPK) -> dict[str, list[tuple[str, int]]]:
    """Bytes each variant moves through device memory, kernel by kernel (reads + writes, each once)."""
    y, yq = T * K * H * 2, T * K * (H // 2 + H // 16 + 4)
    row, wts = T * H * 2, T * K * 4
    fused = [("reduce+add", y + wts + row + row)]
    return {
        "eager": [("y*w", y + wts + y), ("sum", y + row), ("add", 2 * row + row)],
        "torch_compile": fused,
        "torch_compile_static": fused,
        "optimized": fused,
        "dequant_then_reduce": [("dequant", yq + y), ("reduce+add", y + wts + 2 * row)],
        "optimized_nvfp4_v1": [("dequant+reduce+add", yq + wts + 2 * row)],
        "optimized_nvfp4": [("dequant+reduce+add", yq + wts + 2 * row)],
    }


# ---------------------------------------------------------------------------------------------------
# Part 2: expand input rows
# ---------------------------------------------------------------------------------------------------

@dataclass
class Routing:
    """Rows of the MoE in expert order.

    permuted_src: int32 [R] (R = T * top-k): source token of each expanded row, rows grouped by expert
        (tokens ascending within an expert, as TRT-LLM's sort gives).
    expert_offsets: int32 [E+1]: first expanded row of each expert; expert_offsets[E] = R.
    """

    permuted_src: torch.Tensor
    expert_offsets: torch.Tensor
    num_tokens: int
    num_experts: int

    @property
    def num_rows(self) -> int:
        return self.permuted_src.shape[0]

    def counts(self) -> list[int]:
        off = self.expert_offsets.tolist()
        return [off[e + 1] - off[e] for e in range(self.num_experts)]


def make_routing(num_tokens: int, num_experts: int = EXPAND_EXPERTS, top_k: int = TOPK, seed: int = 0,
                 device="cuda") -> Routing:
    """Random top-k routing (distinct experts per token, uniform), sorted by expert then token."""
    if top_k > num_experts:
        raise InputError(f"top_k: expected at most num_experts ({num_experts}), got {top_k}")
    g = torch.Generator().manual_seed(seed)
    ids = torch.rand(num_tokens, num_experts, generator=g).argsort(dim=1)[:, :top_k]
    expert = ids.flatten()
    token = torch.arange(num_tokens).repeat_interleave(top_k)
    order = torch.argsort(expert * num_tokens + token)
    counts = torch.bincount(expert, minlength=num_experts)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    return Routing(token[order].int().to(device), offsets.int().to(device), num_tokens, num_experts)


def region_starts(expert_offsets: list[int]) -> list[int]:
    """First scale-buffer row of each expert's region: roundup128(offset[e] + 127 e), e = 0..E.

    TRT-LLM's formula: an upper bound of the padded prefix sum that needs only the expert's own offset.
    Region e holds roundup128(count_e) rows; the entry for e = E is the end of the buffer in use.
    """
    return [_pad(off + 127 * e, ROW_TILE) for e, off in enumerate(expert_offsets)]


def scale_buffer_rows(max_rows: int, num_experts: int) -> int:
    """Rows the per-expert swizzled scale buffer needs for up to max_rows expanded rows."""
    return _pad(max_rows + 127 * num_experts, ROW_TILE)


def make_expand_inputs(num_tokens: int, hidden: int = HIDDEN, num_experts: int = EXPAND_EXPERTS,
                       top_k: int = TOPK, seed: int = 0, device="cuda") -> dict:
    """Received hidden states as NVFP4 (codes uint8 [T, H/2], linear scales uint8 [T, H/16], random bytes:
    every code and scale value occurs) and a routing. Also the unfused baseline's extras, prepared here
    (untimed, in the baseline's favour): scales_ext [T+1, pad4(H/16)] with a zero last row, and
    gather_padded int32 [rows]: the source token of every scale-buffer row, T for padding and gaps."""
    check_multiple("hidden (H)", hidden, nvfp4.BLOCK)
    dev = torch.device(device)
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 256, (num_tokens, hidden // 2), dtype=torch.uint8, generator=g)
    # E4M3 scale bytes of a real tensor: positive, finite (0x7f is NaN), mostly mid-range.
    scales = torch.randint(0x20, 0x7f, (num_tokens, hidden // 16), dtype=torch.uint8, generator=g)
    routing = make_routing(num_tokens, num_experts, top_k, seed=seed + 1, device=dev)
    kb, kbp = hidden // 16, _pad(hidden // 16, 4)
    scales_ext = torch.zeros(num_tokens + 1, kbp, dtype=torch.uint8)
    scales_ext[:num_tokens, :kb] = scales
    off = routing.expert_offsets.tolist()
    starts = region_starts(off)
    src = routing.permuted_src.cpu()
    gather = torch.full((starts[-1],), num_tokens, dtype=torch.int32)
    for e in range(num_experts):
        c = off[e + 1] - off[e]
        gather[starts[e]:starts[e] + c] = src[off[e]:off[e + 1]]
    return {"codes": codes.to(dev), "scales": scales.to(dev), "routing": routing,
            "scales_ext": scales_ext.to(dev), "gather_padded": gather.to(dev), "hidden": hidden}


def expand_reference(codes: torch.Tensor, scales: torch.Tensor, routing: Routing,
                     num_out_tokens: int | None = None) -> dict:
    """What expand must produce (any device).

    codes: uint8 [T, H/2], scales: uint8 [T, H/16] (linear). Returns
    codes: uint8 [R, H/2], codes[r] = codes_in[permuted_src[r]];
    scales: flat uint8 [rows * pad4(H/16)] (rows = region_starts[E]): expert e's scales, swizzled with
        nvfp4.swizzle_scales (128x4 tiles, zero padding to a multiple of 128 rows), at row region_starts[e];
    scales_mask: bool, same shape: the bytes that belong to an expert region (gaps between regions are
        never read by the GEMM, so their contents are unspecified);
    moe_out: bf16 [num_out_tokens (default T), H] zeros.
    """
    check_tensor("codes", codes, dtype=torch.uint8, ndim=2)
    T, half = codes.shape
    H = 2 * half
    check_multiple("H (2 * codes.shape[1])", H, nvfp4.BLOCK)
    check_tensor("scales", scales, dtype=torch.uint8, shape=[T, H // 16])
    kbp = _pad(H // 16, 4)
    off = routing.expert_offsets.tolist()
    starts = region_starts(off)
    src = routing.permuted_src.long()
    sf = torch.zeros(starts[-1] * kbp, dtype=torch.uint8, device=codes.device)
    mask = torch.zeros_like(sf, dtype=torch.bool)
    for e in range(routing.num_experts):
        if off[e + 1] == off[e]:
            continue
        swz = nvfp4.swizzle_scales(scales[src[off[e]:off[e + 1]]])
        a = starts[e] * kbp
        sf[a:a + swz.numel()] = swz
        mask[a:a + swz.numel()] = True
    n_out = T if num_out_tokens is None else num_out_tokens
    return {"codes": codes[src], "scales": sf, "scales_mask": mask,
            "moe_out": torch.zeros(n_out, H, dtype=torch.bfloat16, device=codes.device)}


def make_expand_outputs(inp: dict, poison: bool = True) -> dict:
    """Output buffers of both variants, poisoned (0xA5 codes, 0xFF scales = E4M3 NaN, NaN output) so an
    unwritten byte shows. Sized for the worst case (R = T * top-k rows), as a graph-captured MoE would."""
    T, half = inp["codes"].shape
    H = 2 * half
    r = inp["routing"]
    rows = scale_buffer_rows(r.num_rows, r.num_experts)
    kbp = _pad(H // 16, 4)
    dev = inp["codes"].device
    mk = torch.full if poison else (lambda shape, v, **kw: torch.empty(shape, **kw))
    return {"codes": mk((r.num_rows, half), 0xA5, dtype=torch.uint8, device=dev),
            "scales": mk((rows * kbp,), 0xFF, dtype=torch.uint8, device=dev),
            "staging": mk((rows, kbp), 0xFF, dtype=torch.uint8, device=dev),
            "moe_out": mk((T, H), float("nan"), dtype=torch.bfloat16, device=dev)}


def expand_unfused(inp: dict, out: dict) -> dict:
    """Baseline: permute the codes (index_select), permute the scales into a padded linear staging buffer
    (index_select with a precomputed gather index; padding rows gather a zero row), swizzle it with one
    permute-copy, then memset the MoE output: four kernels."""
    r = inp["routing"]
    R = r.num_rows
    torch.index_select(inp["codes"], 0, r.permuted_src, out=out["codes"][:R])
    gather = inp["gather_padded"]
    rows = gather.shape[0]
    kbp = inp["scales_ext"].shape[1]
    staging = out["staging"][:rows]
    torch.index_select(inp["scales_ext"], 0, gather, out=staging)
    dst = out["scales"][: rows * kbp].view(rows // 128, kbp // 4, 32, 4, 4)
    dst.copy_(staging.view(rows // 128, 4, 32, kbp // 4, 4).permute(0, 3, 2, 1, 4))
    out["moe_out"].zero_()
    return out


def expand_optimized(inp: dict, out: dict) -> dict:
    """One persistent kernel (kernels/moe_tail.cu moe_expand_rows_nvfp4): permuted codes, scales straight
    into the per-expert swizzled layout with zero padding, and the zeroed MoE output. The valid-row count
    is read on the device (expert_offsets[E]); out buffers are sized for R = T * top-k rows."""
    codes, scales, r = inp["codes"], inp["scales"], inp["routing"]
    check_tensor("codes", codes, dtype=torch.uint8, ndim=2)
    T, half = codes.shape
    H = 2 * half
    if H % 64:
        raise InputError(f"H (2 * codes.shape[1]): expected a multiple of 64 (whole 4-column scale groups "
                         f"for 16-byte swizzled stores), got {H}")
    check_tensor("codes", codes, dtype=torch.uint8, device="cuda", ndim=2, contiguous=True, align_bytes=16)
    check_tensor("scales", scales, dtype=torch.uint8, device="cuda", shape=[T, H // 16], contiguous=True,
                 align_bytes=4)
    E = r.num_experts
    if not 1 <= E <= EXPAND_MAX_EXPERTS:
        raise InputError(f"routing.num_experts: expected 1..{EXPAND_MAX_EXPERTS}, got {E}")
    check_tensor("routing.permuted_src", r.permuted_src, dtype=torch.int32, device="cuda", ndim=1, contiguous=True)
    check_tensor("routing.expert_offsets", r.expert_offsets, dtype=torch.int32, device="cuda", shape=[E + 1],
                 contiguous=True)
    R = r.num_rows
    rows = scale_buffer_rows(R, E)
    check_tensor("out['codes']", out["codes"], dtype=torch.uint8, device="cuda", shape=[R, half],
                 contiguous=True, align_bytes=16)
    check_tensor("out['scales']", out["scales"], dtype=torch.uint8, device="cuda", shape=[rows * (H // 16)],
                 contiguous=True, align_bytes=16)
    mo = out["moe_out"]
    check_tensor("out['moe_out']", mo, device="cuda", contiguous=True, align_bytes=16)
    nbytes = mo.numel() * mo.element_size()
    if nbytes % 16:
        raise InputError(f"out['moe_out']: expected a byte size that is a multiple of 16, got {nbytes}")
    groups = H // 64
    n_slabs = -(-groups // 16)
    units = (rows // 128) * n_slabs + -(-(nbytes // 16) // 2048)
    grid = max(1, min(units, _sm_count() * 4))  # persistent (4 x 256 threads fit per SM at 58 registers)
    launch(get_kernel("moe_tail", "moe_expand_rows_nvfp4"), grid, 256,
           (codes, scales, r.permuted_src, r.expert_offsets, out["codes"], out["scales"], mo, E, H,
            np.int64(nbytes // 16)))
    return out


def validate_expand(out: dict, ref: dict) -> dict:
    """Exact equality (expand only moves bytes): codes of the valid rows, every byte of every expert's
    scale region (padding rows must be 0), and an all-zero MoE output (bitwise +0)."""
    R = ref["codes"].shape[0]
    codes_bad = int((out["codes"][:R] != ref["codes"]).sum())
    m = ref["scales_mask"]
    sf_bad = int((out["scales"][: m.numel()][m] != ref["scales"][m]).sum())
    zero_bad = int((out["moe_out"].view(torch.int16) != 0).sum())
    return {"codes_mismatched": codes_bad, "scales_mismatched": sf_bad, "moe_out_nonzero": zero_bad,
            "passed": codes_bad == 0 and sf_bad == 0 and zero_bad == 0}


def expand_bytes(routing: Routing | None = None, T: int | None = None, H: int = HIDDEN,
                 counts: list[int] | None = None, num_out_tokens: int | None = None) -> dict[str, list]:
    """Bytes per variant, kernel by kernel. Either a Routing, or T and the per-expert row counts."""
    if routing is not None:
        T, counts = routing.num_tokens, routing.counts()
    E, R = len(counts), sum(counts)
    n_out = T if num_out_tokens is None else num_out_tokens
    kbp = _pad(H // 16, 4)
    offs = [0]
    for c in counts:
        offs.append(offs[-1] + c)
    starts = region_starts(offs)
    sf_regions = sum(_pad(c, 128) for c in counts) * kbp  # what the GEMM reads
    sf_all = starts[-1] * kbp  # the baseline writes the whole buffer (regions and gaps)
    src = T * (H // 2 + H // 16)
    zeros = n_out * H * 2
    return {
        "unfused": [("index_select codes", T * H // 2 + R * 4 + R * H // 2),
                    ("index_select scales", (T + 1) * kbp + starts[-1] * 4 + sf_all),
                    ("swizzle", 2 * sf_all), ("memset", zeros)],
        "optimized": [("expand+swizzle+memset", src + R * 4 + (E + 1) * 4 + R * H // 2 + sf_regions + zeros)],
    }


# ---------------------------------------------------------------------------------------------------
# Benchmark
# ---------------------------------------------------------------------------------------------------

def _n_sets(set_bytes: int, cap: int = 64) -> int:
    """Input sets to rotate so that together they exceed 3x the L2 (no warm-L2 illusion)."""
    l2 = getattr(torch.cuda.get_device_properties(torch.cuda.current_device()), "L2_cache_size", 50 * 2**20)
    return max(1, min(cap, math.ceil(3 * l2 / max(set_bytes, 1))))


def _time_all(fns: dict[str, list], smoke: bool) -> dict:
    """Graph replay over rotated input sets, variants interleaved (A, B, C, A, B, C: clock drift is shared);
    if a capture fails (torch.compile can refuse), each variant is timed alone, the failing one with plain
    stream launches and a cold L2, and its method says so."""
    from ..bench import time_cuda
    from ..bench.timing import time_variants

    reps = 12 if smoke else 30
    inner = max(20, max(len(f) for f in fns.values()))
    try:
        return time_variants(fns, rounds=3, reps=reps, graph=True, inner=inner)
    except Exception as exc:
        torch.cuda.synchronize()
        out = {}
        for name, f in fns.items():
            try:
                out[name] = time_cuda(f, reps=reps, graph=True, inner=inner)
            except Exception as exc2:
                torch.cuda.synchronize()
                out[name] = time_cuda(f[0], reps=reps, l2="flush")
                out[name].method["graph_failed"] = f"{type(exc2).__name__}: {str(exc2)[:160]}"
        out[next(iter(out))].method["interleave_failed"] = f"{type(exc).__name__}: {str(exc)[:160]}"
        return out


def _stream_times(fns: dict[str, list], smoke: bool) -> dict[str, float]:
    """Plain stream launches (CUDA events around each call, L2 flushed before it): launch gaps included,
    the way reference/baselines.md timed eager and torch.compile."""
    from ..bench.timing import time_variants

    t = time_variants({k: f[0] for k, f in fns.items()}, rounds=2, reps=10 if smoke else 20, l2="flush")
    return {k: round(v.median_us, 3) for k, v in t.items()}


def _sum_bytes(parts) -> int:
    return sum(b for _, b in parts)


def benchmark_reduce(tokens, smoke: bool = False, progress: bool = True, hidden: int = HIDDEN):
    """Cases reduce_T{T}: every variant validated on fresh inputs (output poisoned with NaN), then timed
    by graph replay over rotated input sets (> 3x L2 together, copies of the validated set), variants
    interleaved. params.stream_us gives plain stream-launch timings too."""
    from ..bench import Case, current_ceilings

    ceil = current_ceilings()
    cases = []
    for T in tokens:
        inp = make_reduce_inputs(T, hidden, seed=1000 + T)
        y, w, shared, yq = inp["y"], inp["w"], inp["shared"], inp["yq"]
        ref64, mag64 = reduce_reference_fp64(y, w, shared)
        yd = nvfp4.dequantize_reference(yq).view(T, TOPK, hidden)
        refq64, magq64 = reduce_reference_fp64(yd, w, shared)
        del yd
        scratch = torch.empty(T * TOPK, hidden, dtype=torch.bfloat16, device="cuda")
        variants = {  # name -> (fn(set) -> out, input format, exact)
            "eager": (lambda s: reduce_eager(s["y"], s["w"], s["shared"]), "bf16", False),
            "torch_compile": (lambda s: reduce_compiled(s["y"], s["w"], s["shared"]), "bf16", False),
            "torch_compile_static": (lambda s: reduce_compiled(s["y"], s["w"], s["shared"], dynamic=False),
                                     "bf16", False),
            "optimized": (lambda s: reduce_optimized(s["y"], s["w"], s["shared"], s["out"]), "bf16", True),
            "dequant_then_reduce": (lambda s: reduce_dequant_then_reduce(s["yq"], s["w"], s["shared"], s["out"],
                                                                         s["scratch"]), "nvfp4", False),
            "optimized_nvfp4_v1": (lambda s: reduce_optimized_nvfp4(s["yq"], s["w"], s["shared"], s["out"],
                                                                    version=1), "nvfp4", True),
            "optimized_nvfp4": (lambda s: reduce_optimized_nvfp4(s["yq"], s["w"], s["shared"], s["out"]),
                                "nvfp4", True),
        }
        bytes_by = {k: _sum_bytes(v) for k, v in reduce_bytes(T, hidden).items()}
        base = {"y": y, "w": w, "shared": shared, "yq": yq, "scratch": scratch}
        fns, val, out_bf16 = {}, {"passed": True}, None
        for name, (fn, fmt, exact) in variants.items():
            s0 = dict(base, out=torch.full_like(shared, float("nan")))
            got = fn(s0)
            torch.cuda.synchronize()
            r64, m64 = (ref64, mag64) if fmt == "bf16" else (refq64, magq64)
            v = validate_reduce(got, r64, m64, exact)
            for key in ("max_ulp", "rel_l2"):
                val[f"{name}.{key}"] = round(v[key], 6)
            val["passed"] &= v["passed"]
            if name == "optimized":
                out_bf16 = got.clone()
            if name == "optimized_nvfp4" and out_bf16 is not None:  # what NVFP4 does to the result (info)
                val["optimized_nvfp4.rel_l2_vs_bf16_result"] = round(
                    float((got.double() - out_bf16.double()).norm() / out_bf16.double().norm()), 5)
            if progress:
                print(f"  reduce T={T:5d} {name:20s} validation {v}", flush=True)
            n = _n_sets(bytes_by["optimized" if fmt == "bf16" else "optimized_nvfp4"])
            sets = [s0] + [_clone_set(base, fmt) for _ in range(n - 1)]
            fns[name] = [lambda s=s, fn=fn: fn(s) for s in sets]
        timings = _time_all(fns, smoke)
        stream_us = _stream_times(fns, smoke)
        bounds = {k: ceil.bound_us(bytes=b) for k, b in bytes_by.items()}
        if progress:
            for name, t in timings.items():
                print(f"  reduce T={T:5d} {name:20s} {t}  bound {bounds[name]:8.2f} us "
                      f"({t.median_us / bounds[name]:5.2f}x)  stream {stream_us[name]:9.2f} us", flush=True)
        params = {"tokens": T, "hidden": hidden, "top_k": TOPK, "bytes": bytes_by,
                  "bounds_us": {k: round(b, 3) for k, b in bounds.items()}, "stream_us": stream_us,
                  "input_sets": {k: len(f) for k, f in fns.items()}}
        cases.append(Case(name=f"reduce_T{T}", params=params, variants=timings, baseline="eager",
                          optimized="optimized", bound_us=bounds["optimized"], validation=val))
        del inp, y, yq, ref64, mag64, refq64, magq64, scratch, base, fns
        torch.cuda.empty_cache()
    return cases


def _clone_set(base: dict, fmt: str) -> dict:
    s = {"w": base["w"].clone(), "shared": base["shared"].clone(), "out": torch.empty_like(base["shared"])}
    if fmt == "bf16":
        s["y"] = base["y"].clone()
    else:
        q = base["yq"]
        s["yq"] = nvfp4.NVFP4Tensor(q.codes.clone(), q.scales.clone(), q.global_scale.clone(), q.layout, q.shape)
        s["scratch"] = torch.empty_like(base["scratch"])
    return s


def benchmark_expand(tokens, smoke: bool = False, progress: bool = True, hidden: int = HIDDEN,
                     num_experts: int = EXPAND_EXPERTS):
    """Cases expand_T{T}: unfused (baseline) and optimized, validated byte-exactly on poisoned outputs,
    then graph-timed over rotated input/output sets, interleaved."""
    from ..bench import Case, current_ceilings

    ceil = current_ceilings()
    cases = []
    for T in tokens:
        inp = make_expand_inputs(T, hidden, num_experts, seed=2000 + T)
        ref = expand_reference(inp["codes"], inp["scales"], inp["routing"])
        bytes_by = {k: _sum_bytes(v) for k, v in expand_bytes(inp["routing"], H=hidden).items()}
        variants = {"unfused": expand_unfused, "optimized": expand_optimized}
        fns, val = {}, {"passed": True}
        for name, fn in variants.items():
            out = make_expand_outputs(inp)
            fn(inp, out)
            torch.cuda.synchronize()
            v = validate_expand(out, ref)
            for key in ("codes_mismatched", "scales_mismatched", "moe_out_nonzero"):
                val[f"{name}.{key}"] = v[key]
            val["passed"] &= v["passed"]
            if progress:
                print(f"  expand T={T:5d} {name:10s} validation {v}", flush=True)
            n = _n_sets(bytes_by["optimized"])
            sets = [(inp, out)] + [(_clone_expand_inputs(inp), make_expand_outputs(inp, poison=False))
                                   for _ in range(n - 1)]
            fns[name] = [lambda s=s, fn=fn: fn(*s) for s in sets]
        timings = _time_all(fns, smoke)
        stream_us = _stream_times(fns, smoke)
        # Yardstick, not a variant: torch's memset of the same MoE output alone (write-only bandwidth).
        memset = _time_all({"memset": [lambda o=o: o["moe_out"].zero_() for _, o in sets]}, smoke)["memset"]
        bounds = {k: ceil.bound_us(bytes=b) for k, b in bytes_by.items()}
        if progress:
            print(f"  expand T={T:5d} memset of the output alone {memset}", flush=True)
            for name, t in timings.items():
                print(f"  expand T={T:5d} {name:10s} {t}  bound {bounds['optimized']:8.2f} us "
                      f"({t.median_us / bounds['optimized']:5.2f}x)  stream {stream_us[name]:9.2f} us", flush=True)
        r = inp["routing"]
        params = {"tokens": T, "hidden": hidden, "top_k": TOPK, "experts": num_experts, "rows": r.num_rows,
                  "scale_buffer_rows": region_starts(r.expert_offsets.tolist())[-1], "bytes": bytes_by,
                  "bounds_us": {k: round(b, 3) for k, b in bounds.items()}, "stream_us": stream_us,
                  "input_sets": {k: len(f) for k, f in fns.items()},
                  "memset_alone_us": round(memset.median_us, 3), "memset_bytes": T * hidden * 2}
        cases.append(Case(name=f"expand_T{T}", params=params, variants=timings, baseline="unfused",
                          optimized="optimized", bound_us=bounds["optimized"], validation=val))
        del inp, ref, fns
        torch.cuda.empty_cache()
    return cases


def _clone_expand_inputs(inp: dict) -> dict:
    r = inp["routing"]
    return dict(inp, codes=inp["codes"].clone(), scales=inp["scales"].clone(),
                scales_ext=inp["scales_ext"].clone(), gather_padded=inp["gather_padded"].clone(),
                routing=Routing(r.permuted_src.clone(), r.expert_offsets.clone(), r.num_tokens, r.num_experts))


def benchmark(smoke: bool = False, progress: bool = True, tokens=None):
    """All cases of the `moe_tail` record: reduce_T{T} then expand_T{T} for T in CASE_TOKENS."""
    tokens = tokens or ((32, 256) if smoke else CASE_TOKENS)
    return benchmark_reduce(tokens, smoke, progress) + benchmark_expand(tokens, smoke, progress)
