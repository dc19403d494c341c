"""NVFP4 on Hopper: an exact reference quantizer, CuPy quantize/dequantize kernels, and the wo GEMM.

Idea: NVFP4 stores a tensor as 4-bit E2M1 codes (two per byte), one FP8 E4M3 scale per 16 consecutive
elements of a row, and one FP32 global scale. Hopper has neither FP4 tensor cores nor FP4 convert
instructions, so encode and decode run in software and the math runs in BF16; the win at decode is
bytes: the DeepSeek-R1 wo weight (7168 x 16384) is 66.1 MB in NVFP4 instead of 234.9 MB in BF16.

Bytes model: quantizing an [M, K] bf16 tensor reads 2MK bytes and writes MK/2 (codes) + MK/16 (scales)
bytes; dequantizing reads MK/2 + MK/16 and writes 2MK (bf16) or 4MK (fp32). The weight-only wo GEMM
reads 9/16 byte per weight element plus the activations and writes the bf16 output.
Blog: "Scaling Expert Parallelism in TensorRT-LLM, Part 3", wo GEMM in NVFP4 (reference/techniques.md
sections 1 and 2.1).

Exact recipe (section 1.3 of techniques.md, "exact math" flavour, every step one IEEE fp32 operation):
    g        = 2688 / max(amax, 1e-12)           per tensor ("tensor") or per row ("row"), or given
    sf_f32   = min(g * (vmax / 6), 448)           vmax = max |x| over the 16-element block
    sf       = e4m3_rn(sf_f32)                    round-to-nearest-even (saturation by the min above)
    qscale   = 1 / (float(sf) * (1 / g))  if sf != 0 else 0
    code     = e2m1_rn(x * qscale)                RNE on the E2M1 grid (tie table), |v| > 6 -> 6
    decoded  = e2m1(code) * (float(sf) * (1 / g))
Policies (tested in tests/test_nvfp4.py):
- NaN or +-Inf anywhere in the input: the reference raises InputError naming `x` (an Inf would set
  amax = Inf and silently zero the tensor; a NaN has no meaningful code). The CUDA kernels do not
  check (it would cost a pass over the input); their output is unspecified for non-finite inputs.
- amax = 0 (all-zero tensor or row): g = 2688 / 1e-12, every scale is 0, every code is +-0.
- all-zero block: vmax = 0 -> sf = 0 -> qscale = 0 -> codes +-0 (the sign of each zero is kept, as
  the hardware cvt does), decoded 0.
- denormal range: a block whose g * vmax / 6 is below half the smallest E4M3 subnormal (2^-10) gets
  sf = 0 and decodes to 0 (flushed); between 2^-10 and 2^-6 the scale is an E4M3 subnormal with
  fewer significant bits, so the block's relative error grows. With the per-tensor global scale
  this hits blocks 2^-9 * 6 / 448 ~ 2.6e-5 times smaller than amax.
- a given global scale must be finite and > 0; blocks whose sf_f32 exceeds 448 saturate (sf = 448,
  codes clamp at +-6).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from ..runtime import InputError, check_choice, check_multiple, check_tensor

SOURCES = {
    "nvfp4": ("workbench/techniques/nvfp4.py", "nvfp4"),
    "wo_gemm": ("workbench/techniques/nvfp4.py", "workbench/techniques/wo_gemm.py", "nvfp4", "wo_gemm"),
}

BLOCK = 16  # elements per E4M3 block scale
E2M1_MAX = 6.0
E4M3_MAX = 448.0
GLOBAL_NUMERATOR = E2M1_MAX * E4M3_MAX  # 2688: g = 2688 / amax maps amax to the largest code * scale
AMAX_FLOOR = 1e-12  # amax below this (an all-zero tensor/row) is clamped, so g stays finite

# Decoded value of each 4-bit code: bit 3 is the sign, codes 0..7 are 0, 0.5, 1, 1.5, 2, 3, 4, 6.
# Code 8 is -0.0.
E2M1_VALUES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                            -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=torch.float32)

# RNE on the E2M1 grid. Magnitude code = number of thresholds passed; a tie goes to the even code,
# so the comparison at a tie point is ">" when the upper neighbour is odd and ">=" when it is even.
# (threshold, inclusive): 0.25 -> tie 0|0.5 goes to 0; 0.75 -> 0.5|1 goes to 1; 1.25 -> 1|1.5 to 1;
# 1.75 -> 1.5|2 to 2; 2.5 -> 2|3 to 2; 3.5 -> 3|4 to 4; 5 -> 4|6 to 4.
E2M1_THRESHOLDS = ((0.25, False), (0.75, True), (1.25, False), (1.75, True), (2.5, False), (3.5, True),
                   (5.0, False))


@dataclass
class NVFP4Tensor:
    """An NVFP4-quantized [M, K] tensor.

    codes: uint8 [M, K/2], element 2j in the low nibble, 2j+1 in the high nibble.
    scales: uint8 E4M3 bytes, [M, K/16] ("linear") or flat pad128(M) * pad4(K/16) ("swizzled",
        the 128x4 layout of techniques.md 1.4, zero padding).
    global_scale: fp32, shape [] (per tensor) or [M] (per row), quantization direction: g = 2688/amax.
    layout: "linear" or "swizzled" (of `scales`).
    shape: (M, K) of the original tensor.
    """

    codes: torch.Tensor
    scales: torch.Tensor
    global_scale: torch.Tensor
    layout: str
    shape: tuple

    @property
    def nbytes(self) -> int:
        return self.codes.numel() + self.scales.numel() + 4 * self.global_scale.numel()

    def linear_scales(self) -> torch.Tensor:
        """Scales as uint8 [M, K/16], whatever the stored layout."""
        if self.layout == "linear":
            return self.scales
        return unswizzle_scales(self.scales, self.shape[0], self.shape[1])


# ---------------------------------------------------------------------------------------------------
# Element and scale conversions
# ---------------------------------------------------------------------------------------------------

def e2m1_encode(v: torch.Tensor) -> torch.Tensor:
    """fp32 tensor -> uint8 4-bit codes (0..15), RNE on the E2M1 grid, |v| > 6 saturates to +-6.

    The sign bit is the sign of v (so -0.1 -> code 8, "-0"), as a hardware RNE conversion keeps it.
    """
    mag = v.abs()
    code = torch.zeros(v.shape, dtype=torch.uint8, device=v.device)
    for thr, inclusive in E2M1_THRESHOLDS:
        code += (mag >= thr if inclusive else mag > thr).to(torch.uint8)
    return code | (torch.signbit(v).to(torch.uint8) << 3)


def e2m1_decode(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes (0..15) -> fp32 values."""
    return E2M1_VALUES.to(codes.device)[codes.long()]


def e4m3_encode(v: torch.Tensor) -> torch.Tensor:
    """Non-negative fp32 -> E4M3 byte, round-to-nearest-even, saturating at 448.

    torch's float8_e4m3fn cast is RNE but maps values above 448 to NaN, hence the clamp first.
    """
    return v.clamp(max=E4M3_MAX).to(torch.float8_e4m3fn).view(torch.uint8)


def e4m3_decode(b: torch.Tensor) -> torch.Tensor:
    """uint8 E4M3 bytes -> fp32 (exact)."""
    return b.view(torch.float8_e4m3fn).to(torch.float32)


def pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes [..., K] -> bytes [..., K/2], element 2j in the low nibble."""
    return codes[..., 0::2] | (codes[..., 1::2] << 4)


def unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    """bytes [..., K/2] -> uint8 codes [..., K]."""
    return torch.stack((packed & 0xF, packed >> 4), dim=-1).flatten(-2)


# ---------------------------------------------------------------------------------------------------
# The 128x4 swizzled scale layout (techniques.md 1.4)
# ---------------------------------------------------------------------------------------------------

def _pad(n: int, m: int) -> int:
    return (n + m - 1) // m * m


def swizzled_size(M: int, K: int) -> int:
    """Bytes of the swizzled scale buffer of an [M, K] tensor: pad128(M) * pad4(K/16)."""
    return _pad(M, 128) * _pad(K // BLOCK, 4)


def swizzled_sf_offset(m, kb, kb_padded: int):
    """Byte offset of scale S[m, kb] in the swizzled buffer (ints or integer tensors)."""
    return (((m // 128) * (kb_padded // 4) + kb // 4) * 512 + (m % 32) * 16 + ((m % 128) // 32) * 4 + kb % 4)


def swizzle_scales(sf_linear: torch.Tensor) -> torch.Tensor:
    """uint8 [M, K/16] -> flat uint8 of pad128(M) * pad4(K/16) bytes in the 128x4 layout, zero padding."""
    check_tensor("sf_linear", sf_linear, dtype=torch.uint8, ndim=2)
    M, KB = sf_linear.shape
    Mp, KBp = _pad(M, 128), _pad(KB, 4)
    padded = torch.zeros((Mp, KBp), dtype=torch.uint8, device=sf_linear.device)
    padded[:M, :KB] = sf_linear
    return padded.view(Mp // 128, 4, 32, KBp // 4, 4).permute(0, 3, 2, 1, 4).reshape(-1).contiguous()


def unswizzle_scales(sf_swizzled: torch.Tensor, M: int, K: int) -> torch.Tensor:
    """Inverse of swizzle_scales: flat swizzled bytes of an [M, K] tensor -> uint8 [M, K/16]."""
    check_multiple("K", K, BLOCK)
    Mp, KBp = _pad(M, 128), _pad(K // BLOCK, 4)
    check_tensor("sf_swizzled", sf_swizzled, dtype=torch.uint8, shape=[Mp * KBp])
    tiles = sf_swizzled.view(Mp // 128, KBp // 4, 32, 4, 4).permute(0, 3, 2, 1, 4).reshape(Mp, KBp)
    return tiles[:M, : K // BLOCK].contiguous()


# ---------------------------------------------------------------------------------------------------
# Reference quantize / dequantize
# ---------------------------------------------------------------------------------------------------

def global_scale_from_amax(amax: torch.Tensor) -> torch.Tensor:
    """g = 2688 / max(amax, 1e-12), fp32 (the quantization-direction global scale)."""
    den = amax.float().clamp(min=AMAX_FLOOR)
    return torch.div(torch.full_like(den, GLOBAL_NUMERATOR), den)


def _check_x(x: torch.Tensor) -> None:
    check_tensor("x", x, dtype=(torch.bfloat16, torch.float16, torch.float32), ndim=2)
    check_multiple("x.shape[1] (K)", x.shape[1], BLOCK)
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise InputError(f"x: expected finite values, got {bad} NaN/Inf element(s) (NVFP4 has no Inf/NaN "
                         "codes; clean or clamp the input first)")


def _resolve_global_scale(x32: torch.Tensor, global_scale) -> torch.Tensor:
    M = x32.shape[0]
    if isinstance(global_scale, str):
        check_choice("global_scale", global_scale, ("tensor", "row"))
        if global_scale == "tensor":
            return global_scale_from_amax(x32.abs().amax() if x32.numel() else torch.zeros(()))
        return global_scale_from_amax(x32.abs().amax(dim=1))
    g = global_scale
    check_tensor("global_scale", g, dtype=torch.float32)
    if g.dim() not in (0, 1) or (g.dim() == 1 and g.shape[0] != M):
        raise InputError(f"global_scale: expected shape [] or [{M}], got {list(g.shape)}")
    if not bool(torch.isfinite(g).all()) or not bool((g > 0).all()):
        raise InputError("global_scale: expected finite values > 0")
    return g.to(x32.device)


def quantize_reference(x: torch.Tensor, global_scale="tensor", layout: str = "linear") -> NVFP4Tensor:
    """Exact NVFP4 quantization of x [M, K] (bf16/fp16/fp32, K % 16 == 0), CPU or GPU.

    global_scale: "tensor" (one fp32 2688/amax), "row" (per-row 2688/amax_row, the combine's dynamic
    per-token scale) or a given fp32 tensor of shape [] or [M]. layout: "linear" or "swizzled" scales.
    """
    _check_x(x)
    check_choice("layout", layout, ("linear", "swizzled"))
    M, K = x.shape
    x32 = x.float()
    g = _resolve_global_scale(x32, global_scale)
    g_rows = g.expand(M) if g.dim() == 0 else g
    blocks = x32.view(M, K // BLOCK, BLOCK)
    vmax = blocks.abs().amax(dim=-1)  # [M, KB]
    # Every division is tensor / tensor: on CUDA, torch turns a division by a Python scalar into a
    # multiplication by its reciprocal, which is not the IEEE quotient the kernels compute.
    sf_f32 = g_rows[:, None] * torch.div(vmax, torch.full_like(vmax, 6.0))  # same order as the kernel
    sf = e4m3_encode(sf_f32)
    sf_dec = e4m3_decode(sf)
    g_inv = torch.div(torch.ones_like(g_rows), g_rows)  # fp32
    denom = sf_dec * g_inv[:, None]
    qscale = torch.where(sf_dec != 0, torch.div(torch.ones_like(denom), denom), torch.zeros_like(sf_dec))
    codes = e2m1_encode(blocks * qscale[..., None]).view(M, K)
    scales = sf if layout == "linear" else swizzle_scales(sf)
    return NVFP4Tensor(codes=pack_nibbles(codes), scales=scales, global_scale=g.float(), layout=layout,
                       shape=(M, K))


def dequantize_reference(q: NVFP4Tensor) -> torch.Tensor:
    """NVFP4Tensor -> fp32 [M, K]: e2m1(code) * (float(sf) * (1 / g)), fp32."""
    M, K = q.shape
    codes = unpack_nibbles(q.codes).view(M, K // BLOCK, BLOCK)
    sf = e4m3_decode(q.linear_scales())
    g = q.global_scale.float()
    g = g.expand(M).contiguous() if g.dim() == 0 else g
    g_inv = torch.div(torch.ones_like(g), g)
    return (e2m1_decode(codes) * (sf * g_inv[:, None])[..., None]).view(M, K)


def reference(x: torch.Tensor, global_scale="tensor") -> torch.Tensor:
    """Quantize-dequantize round trip of x (fp32 [M, K]): what NVFP4 does to a tensor."""
    return dequantize_reference(quantize_reference(x, global_scale))


# ---------------------------------------------------------------------------------------------------
# CUDA kernels (kernels/nvfp4.cu)
# ---------------------------------------------------------------------------------------------------

def _check_cuda_x(x: torch.Tensor) -> None:
    check_tensor("x", x, dtype=torch.bfloat16, device="cuda", ndim=2, contiguous=True, align_bytes=16)
    check_multiple("x.shape[1] (K)", x.shape[1], BLOCK)


def _blocks_grid(n: int, block: int = 256) -> int:
    sms = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
    return max(1, min((n + block - 1) // block, sms * 16))


def amax_global_scale(x: torch.Tensor) -> torch.Tensor:
    """Per-tensor g = 2688 / max(amax(x), 1e-12) on the GPU (two small kernels); fp32 shape []."""
    import numpy as np

    from ..runtime import get_kernel, launch

    _check_cuda_x(x)
    bits = torch.zeros(1, dtype=torch.int32, device=x.device)
    n8 = x.numel() // 8
    launch(get_kernel("nvfp4", "nvfp4_amax_v1"), _blocks_grid(n8), 256, (x, np.int64(n8), bits))
    g = torch.empty((), dtype=torch.float32, device=x.device)
    launch(get_kernel("nvfp4", "nvfp4_global_scale_v1"), 1, 1, (bits, g))
    return g


QUANT_V3_CHUNK = 512  # 16-element blocks per CTA per row in nvfp4_quantize_v3<4> (128 threads x 4)
# nvfp4_quantize_v5<NB, U, SPLIT>: a CTA owns 128 rows x NB blocks; a warp keeps U row steps of loads in
# flight; SPLIT: a lane holds half a block (one 16-byte chunk) and shares the block's math with its pair.
# Measured (graph replay, [8192, 7168] / [8192, 16384], % of copy bandwidth): H200, commit 550c8a8: SPLIT is
# ALU-bound there (63-69%, v3 with a lane per block 69-79%); H100, commit 3571948: (8, 4, False) 88.8% /
# 94.0%, the best of the set (SPLIT (16, 4) 85.6% / 91.6%, v3 66.7% / 76.3%).
# H200, commit 4a7e430 (data/diagnostics/quant_v6_h200.json): (16, 2, False) 80.9% / 85.4%, (8, 4, False) 76.8% /
# 81.3%: on the H200 the faster memory needs more CTAs per SM (40 registers: 6) than (8, 4)'s 59 registers allow (4).
QUANT_V5_CONFIGS = ((16, 4, True), (8, 2, True), (8, 4, True), (32, 4, False), (32, 2, False), (16, 4, False),
                    (16, 2, False), (8, 4, False))
QUANT_V5_DEFAULT = (8, 4, False)  # any GPU model QUANT_V5_BY_MODEL does not name
QUANT_V5_BY_MODEL = {"NVIDIA H100 80GB HBM3": (8, 4, False), "NVIDIA H200": (16, 2, False)}
# nvfp4_quantize_v11<NB, U>: v5's tile with 13-14 instructions per element instead of 17 (Nsight Compute; v5 is
# issue-bound on an H200), per-tensor scales only. H200, commit 2ad4807 (data/diagnostics/quant_v11_h200.json): (8, 4)
# 88.0% / 92.9% of copy, v5 (16, 2) 81.4% / 87.0% in the same run; record 8cff1cd: (8, 4) 87.4% / 92.0%. Not yet
# measured on an H100.
# The linear layout wants NB = 32: a CTA's scale bytes per row are then one whole 32-byte sector (NB = 8 writes a
# quarter of one, and the H200 pays for the partial sectors): H200, commit 25ac3d0 (quant_v11_h200.json,
# linear_configs): (32, 1) 87.0% / 87.4%, (8, 4) 83.6% / 82.2%.
QUANT_V11_CONFIGS = ((8, 4), (8, 2), (16, 4), (16, 2), (32, 1))
QUANT_V11_DEFAULTS = {"swizzled": (8, 4), "linear": (32, 1)}
# The kernel for a per-tensor scale, per GPU model and layout (a per-row given scale takes v5, or v1 for "linear"
# on a model whose linear kernel is v1). Swizzled: v11 on the H200; v5 on the H100 (v11 unmeasured there). Linear:
# H100, commit e1685f8: v1 85% / 92% of copy, v5 84% / 85%. H200, record 8cff1cd: v11 83.3% / 81.8% with a byte
# store per block, v5 79.4% / 83.0%, v3 82.0% / 82.3%, v1 62.6% / 68.4%; v11 now gathers the linear scale bytes per
# tile in shared memory, as the swizzled ones (the record names its time: cupy_quantize_linear).
QUANT_SWIZZLED_DEFAULT = "v5"  # any GPU model QUANT_SWIZZLED_BY_MODEL does not name
QUANT_SWIZZLED_BY_MODEL = {"NVIDIA H100 80GB HBM3": "v5", "NVIDIA H200": "v11"}
QUANT_LINEAR_DEFAULT = "v1"  # any GPU model QUANT_LINEAR_BY_MODEL does not name
QUANT_LINEAR_BY_MODEL = {"NVIDIA H100 80GB HBM3": "v1", "NVIDIA H200": "v11"}


def quant_v5_default(device=None) -> tuple[int, int, bool]:
    """The v5 config (NB, U, SPLIT) measured fastest on this CUDA device's GPU model (a str: that model's name);
    QUANT_V5_DEFAULT for a model QUANT_V5_BY_MODEL does not name."""
    return QUANT_V5_BY_MODEL.get(_gpu_model(device), QUANT_V5_DEFAULT)


def quant_linear_kernel(device=None) -> str:
    """The linear layout's quantize kernel measured fastest on this CUDA device's GPU model (a str: that model's
    name); QUANT_LINEAR_DEFAULT for a model QUANT_LINEAR_BY_MODEL does not name."""
    return QUANT_LINEAR_BY_MODEL.get(_gpu_model(device), QUANT_LINEAR_DEFAULT)


def quant_swizzled_kernel(device=None) -> str:
    """The swizzled layout's quantize kernel (per-tensor scale) measured fastest on this CUDA device's GPU model (a
    str: that model's name); QUANT_SWIZZLED_DEFAULT for a model QUANT_SWIZZLED_BY_MODEL does not name."""
    return QUANT_SWIZZLED_BY_MODEL.get(_gpu_model(device), QUANT_SWIZZLED_DEFAULT)


def _gpu_model(device) -> str:
    """A GPU model name given as such, or the model of a CUDA device (torch.device, "cuda:N", index or None)."""
    if isinstance(device, str) and not device.startswith("cuda"):
        return device
    return _cuda_model(torch.device(device if device is not None else "cuda"))


@functools.cache
def _cuda_model(device: torch.device) -> str:
    return torch.cuda.get_device_name(device)


def _check_out_alignment(out, codes_align: int, kernel: str) -> None:
    """The output buffers' alignment a quantize kernel stores with (codes: 4 or 8 bytes per store, scales: 16)."""
    for name, t, align in (("out.codes", out.codes, codes_align), ("out.scales", out.scales, 16)):
        if t.data_ptr() % align:
            raise InputError(f"{name}: expected a {align}-byte aligned buffer for kernel {kernel}, "
                             f"got address {t.data_ptr():#x}")


def _launch_quantize_v5(x, M, K, g_in, g_stride, out, config):
    from ..runtime import get_kernel, launch

    if tuple(config) not in QUANT_V5_CONFIGS:
        raise InputError(f"config: expected one of {QUANT_V5_CONFIGS}, got {config!r}")
    nb, unroll, split = config
    _check_out_alignment(out, 4, "v5")
    grid = (-(-(K // BLOCK) // nb), -(-M // 128), 1)
    launch(get_kernel("nvfp4", f"nvfp4_quantize_v5<{nb}, {unroll}, {str(split).lower()}>"), grid, 256,
           (x, M, K, g_in, g_stride, out.codes, out.scales, int(out.layout == "swizzled")))


def _launch_quantize_v11(x, M, K, g_in, out, config):
    from ..runtime import get_kernel, launch

    if tuple(config) not in QUANT_V11_CONFIGS:
        raise InputError(f"config: expected one of {QUANT_V11_CONFIGS} for kernel v11, got {config!r}")
    nb, unroll = config
    _check_out_alignment(out, 8, "v11")
    grid = (-(-(K // BLOCK) // nb), -(-M // 128), 1)
    launch(get_kernel("nvfp4", f"nvfp4_quantize_v11<{nb}, {unroll}>"), grid, 256,
           (x, M, K, g_in, out.codes, out.scales, int(out.layout == "swizzled")))


def quantize(x: torch.Tensor, global_scale="tensor", layout: str = "linear", out: NVFP4Tensor | None = None,
             kernel: str | None = None, config=None) -> NVFP4Tensor:
    """NVFP4-quantize a CUDA bf16 x [M, K] with kernels/nvfp4.cu; bit-identical to quantize_reference.

    global_scale: "tensor" (amax pass + quantize), "row" (per-row dynamic, one kernel) or a given fp32
    CUDA tensor [] or [M] (static scale, one kernel). `out` reuses buffers (its scales' padding must be
    zero for the swizzled layout). kernel: None (the fastest measured for the layout and this GPU model:
    quant_swizzled_kernel / quant_linear_kernel; with a per-row given scale v5 / quant_linear_kernel unless that is
    v11), "v11" (v5's tile with fewer instructions per element; per-tensor scales only; `config` = (NB, U) of
    QUANT_V11_CONFIGS, None: the layout's QUANT_V11_DEFAULTS), "v5" (coalesced row segments, swizzled scales written as whole
    tiles from shared memory; `config` = (NB, U, SPLIT) of QUANT_V5_CONFIGS, None: this GPU model's,
    quant_v5_default), "v3" (fp32-pipe encoder, scale table), "v2" (grid-stride, 4 blocks per thread) or "v1"
    (one CTA per row); "row" always uses v1.
    Non-finite inputs give unspecified codes.
    """
    from ..runtime import get_kernel, launch

    _check_cuda_x(x)
    check_choice("layout", layout, ("linear", "swizzled"))
    M, K = x.shape
    if out is None:
        sf = (torch.empty((M, K // BLOCK), dtype=torch.uint8, device=x.device) if layout == "linear"
              else torch.zeros(swizzled_size(M, K), dtype=torch.uint8, device=x.device))
        g_shape = (M,) if isinstance(global_scale, str) and global_scale == "row" else ()
        out = NVFP4Tensor(codes=torch.empty((M, K // 2), dtype=torch.uint8, device=x.device), scales=sf,
                          global_scale=torch.empty(g_shape, dtype=torch.float32, device=x.device),
                          layout=layout, shape=(M, K))
    dynamic_row = 0
    if isinstance(global_scale, str):
        check_choice("global_scale", global_scale, ("tensor", "row"))
        if global_scale == "tensor":
            out.global_scale = amax_global_scale(x)
            g_in, g_stride = out.global_scale, 0
        else:
            dynamic_row, g_in, g_stride = 1, out.global_scale, 1
    else:
        check_tensor("global_scale", global_scale, dtype=torch.float32, device="cuda", contiguous=True)
        if global_scale.dim() not in (0, 1) or (global_scale.dim() == 1 and global_scale.shape[0] != M):
            raise InputError(f"global_scale: expected shape [] or [{M}], got {list(global_scale.shape)}")
        out.global_scale = global_scale
        g_in, g_stride = global_scale, int(global_scale.dim() == 1)
    if kernel is None and config is not None:  # a config names its kernel: (NB, U, SPLIT) v5, (NB, U) v11
        kernel = "v11" if len(tuple(config)) == 2 else "v5"
    elif kernel is None:  # each GPU model's fastest for the layout (QUANT_SWIZZLED_BY_MODEL, QUANT_LINEAR_BY_MODEL)
        kernel = quant_swizzled_kernel(x.device) if layout == "swizzled" else quant_linear_kernel(x.device)
        if kernel == "v11" and (g_stride or dynamic_row):  # v11 takes a per-tensor scale only
            kernel = "v5"
    check_choice("kernel", kernel, ("v1", "v2", "v3", "v5", "v11"))
    if config is not None and kernel not in ("v5", "v11"):
        raise InputError(f"config: only kernels 'v5' and 'v11' take a config, got kernel={kernel!r}")
    if kernel == "v11":
        if g_stride or dynamic_row:
            raise InputError("kernel: 'v11' takes a per-tensor global scale (\"tensor\" or a tensor []), got a per-row "
                             "scale; use kernel 'v5' or None")
        _launch_quantize_v11(x, M, K, g_in, out, QUANT_V11_DEFAULTS[layout] if config is None else config)
        return out
    if kernel == "v5" and not dynamic_row:
        _launch_quantize_v5(x, M, K, g_in, g_stride, out, quant_v5_default(x.device) if config is None else config)
        return out
    if kernel == "v3" and not dynamic_row:
        sms = torch.cuda.get_device_properties(x.device).multi_processor_count
        chunks = -(-(K // BLOCK) // QUANT_V3_CHUNK)
        launch(get_kernel("nvfp4", "nvfp4_quantize_v3<4>"), (max(1, min(M, 8 * sms)), chunks, 1), 128,
               (x, M, K, g_in, g_stride, out.codes, out.scales, int(layout == "swizzled")))
        return out
    if kernel == "v2" and not dynamic_row:
        launch(get_kernel("nvfp4", "nvfp4_quantize_v2_static<4>"), _blocks_grid(M * K // BLOCK // 4, 256), 256,
               (x, M, K, g_in, g_stride, out.codes, out.scales, int(layout == "swizzled")))
        return out
    launch(get_kernel("nvfp4", "nvfp4_quantize_v1"), M, 256,
           (x, M, K, g_in, g_stride, dynamic_row, out.codes, out.scales, int(layout == "swizzled"),
            out.global_scale))
    return out


# The dequantize kernel per GPU model. H200, commit 3e069ac (probe, bf16 [8192, 16384], 80 exactness checks): v2's
# layout 98.6 us swizzled / 95.6 us linear against v1's 111.3 / 105.2. v2 is not yet measured on an H100.
DEQUANT_DEFAULT = "v1"  # any GPU model DEQUANT_BY_MODEL does not name
DEQUANT_BY_MODEL = {"NVIDIA H100 80GB HBM3": "v1", "NVIDIA H200": "v2"}


def dequant_kernel(device=None) -> str:
    """The dequantize kernel measured fastest on this CUDA device's GPU model (a str: that model's name);
    DEQUANT_DEFAULT for a model DEQUANT_BY_MODEL does not name."""
    return DEQUANT_BY_MODEL.get(_gpu_model(device), DEQUANT_DEFAULT)


def dequantize(q: NVFP4Tensor, dtype: torch.dtype = torch.bfloat16, out: torch.Tensor | None = None,
               kernel: str | None = None) -> torch.Tensor:
    """CUDA NVFP4Tensor -> [M, K] bf16 or fp32 (kernels/nvfp4.cu); equals dequantize_reference (bf16:
    rounded to nearest even). kernel: None (this GPU model's, dequant_kernel), "v2" (a lane per 16 output bytes,
    branch-free decode) or "v1" (a thread per block)."""
    from ..runtime import get_kernel, launch

    check_choice("dtype", dtype, (torch.bfloat16, torch.float32))
    M, K = q.shape
    check_tensor("q.codes", q.codes, dtype=torch.uint8, device="cuda", shape=[M, K // 2], contiguous=True,
                 align_bytes=16)
    if out is None:
        out = torch.empty((M, K), dtype=dtype, device=q.codes.device)
    check_tensor("out", out, dtype=dtype, device="cuda", shape=[M, K], contiguous=True, align_bytes=16)
    kernel = dequant_kernel(q.codes.device) if kernel is None else kernel
    check_choice("kernel", kernel, ("v1", "v2"))
    g = q.global_scale
    args = (q.codes, q.scales, g, int(g.dim() == 1), M, K, int(q.layout == "swizzled"), out)
    if kernel == "v2":
        chunks = M * (K // BLOCK) * (4 if dtype == torch.float32 else 2)  # 16-byte output chunks, one per lane
        wide = chunks >= 2 ** 31
        launch(get_kernel("nvfp4", f"nvfp4_dequantize_v2<{str(dtype == torch.float32).lower()}, {str(wide).lower()}>"),
               _blocks_grid(chunks), 256, args)
        return out
    launch(get_kernel("nvfp4", "nvfp4_dequantize_v1"), _blocks_grid(M * K // BLOCK), 256,
           args + (int(dtype == torch.float32),))
    return out


# ---------------------------------------------------------------------------------------------------
# Inputs, validation, benchmark
# ---------------------------------------------------------------------------------------------------

TIE_POINTS = (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0)


def make_inputs(M: int, K: int, seed: int = 0, device="cuda", dtype=torch.bfloat16, outliers: bool = True
                ) -> torch.Tensor:
    """Random activations [M, K]: Gaussian rows with per-row scales over 4 decades, plus a few large
    outliers (x50) so blocks see very different ranges."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn((M, K), generator=g) * torch.exp(torch.randn((M, 1), generator=g) * 2.0)
    if outliers:
        mask = torch.rand((M, K), generator=g) < 1e-3
        x = torch.where(mask, x * 50.0, x)
    return x.to(dtype).to(device)


def make_tie_inputs(M: int, K: int, seed: int = 0, device="cuda") -> torch.Tensor:
    """Blocks that hit every E2M1 tie point exactly when quantized with global_scale = 1.0.

    Each 16-element block gets a power-of-two scale s = 2^e (e in -9..8, so the E4M3 scale is exact
    and includes subnormal scales) and one element 6s (so vmax = 6s, sf = s, qscale = 1/s); the others
    are s * (a tie point, a grid point, or a random value), with random signs. bf16 holds them exactly.
    """
    g = torch.Generator(device="cpu").manual_seed(seed)
    KB = K // BLOCK
    e = torch.randint(-9, 9, (M, KB, 1), generator=g).float()
    s = torch.pow(2.0, e)
    pool = torch.tensor(list(TIE_POINTS) + [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
    pick = pool[torch.randint(0, len(pool), (M, KB, BLOCK), generator=g)]
    rnd = torch.rand((M, KB, BLOCK), generator=g) * 6.0
    vals = torch.where(torch.rand((M, KB, BLOCK), generator=g) < 0.7, pick, rnd)
    vals[..., 0] = 6.0
    sign = torch.where(torch.rand((M, KB, BLOCK), generator=g) < 0.5, -1.0, 1.0)
    return (vals * sign * s).view(M, K).to(torch.bfloat16).to(device)


def compare_exact(q: NVFP4Tensor, ref: NVFP4Tensor) -> dict:
    """Bit comparison of codes, scale bytes (in q's layout) and global scales."""
    codes_bad = int((q.codes != ref.codes.to(q.codes.device)).sum())
    r_sf = ref.scales if ref.layout == q.layout else (
        swizzle_scales(ref.linear_scales()) if q.layout == "swizzled" else ref.linear_scales())
    sf_bad = int((q.scales != r_sf.to(q.scales.device)).sum())
    g_bad = int((q.global_scale.float().cpu() != ref.global_scale.float().cpu()).sum())
    return {"code_mismatches": codes_bad, "scale_mismatches": sf_bad, "global_scale_mismatches": g_bad,
            "passed": codes_bad == 0 and sf_bad == 0 and g_bad == 0}


def quantize_bytes(M: int, K: int) -> int:
    """Read bf16 x, write codes and scales."""
    return 2 * M * K + M * K // 2 + M * K // BLOCK


def _bench_quantize(M: int, K: int, ceil, progress: bool):
    """One quantize case: exactness of every variant, then times."""
    from ..bench import Case, time_cuda

    x = make_inputs(M, K, seed=M + K)
    g_given = global_scale_from_amax(x.float().abs().amax()).cuda()
    variants, validation = {}, {"passed": True}
    # given-scale variants: name -> (layout, kernel, v5 config); the unsuffixed names are the defaults
    given = {"cupy_quantize_linear_v2": ("linear", "v2", None), "cupy_quantize_linear_v3": ("linear", "v3", None),
             "cupy_quantize_swizzled_v3": ("swizzled", "v3", None),
             "cupy_quantize_linear": ("linear", None, None), "cupy_quantize_swizzled": ("swizzled", None, None)}
    # the other kernels and configs of the swizzled layout (the unsuffixed name is this GPU model's default)
    default_sw = quant_swizzled_kernel(x.device)
    default_cfg = quant_v5_default(x.device) if default_sw == "v5" else QUANT_V11_DEFAULTS["swizzled"]
    for kern, configs in (("v5", QUANT_V5_CONFIGS), ("v11", QUANT_V11_CONFIGS)):
        for cfg in configs:
            if (kern, cfg) != (default_sw, default_cfg):
                given["cupy_quantize_swizzled_{}_nb{}u{}{}".format(kern, *cfg[:2], "s" if cfg[2:] == (True,) else "")] = (
                    "swizzled", kern, cfg)
    for kern in ("v1", "v5", "v11"):  # the linear layout's other kernels (v11: every config but the default)
        if kern == "v11":
            for cfg in QUANT_V11_CONFIGS:
                if (kern, cfg) != (quant_linear_kernel(x.device), QUANT_V11_DEFAULTS["linear"]):
                    given["cupy_quantize_linear_v11_nb{}u{}".format(*cfg)] = ("linear", "v11", cfg)
        elif kern != quant_linear_kernel(x.device):
            given[f"cupy_quantize_linear_{kern}"] = ("linear", kern, None)
    ref_lin = quantize_reference(x, g_given, "linear")
    ref_sw = NVFP4Tensor(ref_lin.codes, swizzle_scales(ref_lin.scales), ref_lin.global_scale, "swizzled", (M, K))
    refs = {name: ref_lin if layout == "linear" else ref_sw for name, (layout, _, _) in given.items()}
    refs["cupy_quantize_row_dynamic"] = quantize_reference(x, "row", "swizzled")
    refs["cupy_quantize_tensor_dynamic"] = quantize_reference(x, "tensor", "swizzled")
    outs = {"linear": quantize(x, g_given, "linear"), "swizzled": quantize(x, g_given, "swizzled"),
            "row": quantize(x, "row", "swizzled")}
    runs = {name: (lambda layout=layout, kernel=kernel, config=config, out=None: quantize(
        x, g_given, layout, out=out, kernel=kernel, config=config)) for name, (layout, kernel, config) in given.items()}
    runs["cupy_quantize_row_dynamic"] = lambda out=None: quantize(x, "row", "swizzled", out=out)
    runs["cupy_quantize_tensor_dynamic"] = lambda out=None: quantize(x, "tensor", "swizzled", out=out)
    for name, fn in runs.items():
        v = compare_exact(fn(), refs[name])  # fresh buffers: the swizzled padding must come out zero
        for k in ("code_mismatches", "scale_mismatches", "global_scale_mismatches"):
            validation[f"{name}.{k}"] = v[k]
        validation["passed"] &= v["passed"]
    # buffers reused while timing (no allocation in the timed region)
    out_of = {name: outs[given[name][0]] for name in given}
    out_of["cupy_quantize_row_dynamic"] = outs["row"]
    out_of["cupy_quantize_tensor_dynamic"] = outs["swizzled"]
    timed = {"torch_reference": lambda: quantize_reference(x, g_given, "linear")}
    timed.update({name: (lambda fn=fn, out=out_of[name]: fn(out=out)) for name, fn in runs.items()})
    for name, fn in timed.items():
        variants[name] = time_cuda(fn, reps=20, graph=name != "torch_reference", inner=5,
                                   l2="warm", max_seconds=4.0)
    bytes_ = quantize_bytes(M, K)
    case = Case(name=f"quantize_{M}x{K}", params={"M": M, "K": K, "bytes": bytes_,
                                                   "global_scale": "given per-tensor for linear/swizzled"},
                variants=variants, baseline="torch_reference", optimized="cupy_quantize_swizzled",
                bound_us=ceil.bound_us(bytes=bytes_), validation=validation)
    if progress:
        print(f"  {case.name}: " + "  ".join(f"{k} {t.median_us:.1f}" for k, t in variants.items())
              + f"  bound {case.bound_us:.1f} us")
    return case


def benchmark(smoke: bool = False, progress: bool = True):
    """Cases quantize_8192x7168, quantize_8192x16384 (and dequantize_8192x16384): bit-exact checks
    against the reference on the same inputs, then times (CUDA graph replay; the inputs exceed L2)."""
    from ..bench import Case, current_ceilings, time_cuda

    ceil = current_ceilings()
    shapes = ((8192, 7168), (8192, 16384)) if not smoke else ((256, 7168), (256, 16384))
    cases = []
    for M, K in shapes:
        cases.append(_bench_quantize(M, K, ceil, progress))
    # dequantize (the wo dequant-then-cuBLAS step): codes + scales -> bf16
    M, K = shapes[-1]
    x = make_inputs(M, K, seed=7)
    q = quantize(x, "tensor", "linear")
    ref = dequantize_reference(q).to(torch.bfloat16)
    # the default kernel (this GPU model's) is the unsuffixed variant; the other one is timed beside it
    kernels = {"cupy_dequantize_bf16": None}
    kernels.update({f"cupy_dequantize_bf16_{k}": k for k in ("v1", "v2") if k != dequant_kernel(q.codes.device)})
    validation = {"passed": True}
    for name, kern in kernels.items():
        out = torch.full((M, K), float("nan"), dtype=torch.bfloat16, device="cuda")
        dequantize(q, torch.bfloat16, out=out, kernel=kern)
        bad = int((out.view(torch.int16) != ref.view(torch.int16)).sum())
        validation[f"{name}.bf16_mismatches"] = bad
        validation["passed"] &= bad == 0
    variants = {"torch_reference": time_cuda(lambda: dequantize_reference(q), reps=10, l2="warm", max_seconds=3.0)}
    variants.update({name: time_cuda(lambda kern=kern: dequantize(q, torch.bfloat16, out=out, kernel=kern), reps=20,
                                     graph=True, inner=5, l2="warm", max_seconds=3.0) for name, kern in kernels.items()})
    bad = sum(v for k, v in validation.items() if k.endswith("mismatches"))
    bytes_ = M * K // 2 + M * K // BLOCK + 2 * M * K
    cases.append(Case(name=f"dequantize_{M}x{K}", params={"M": M, "K": K, "bytes": bytes_}, variants=variants,
                      baseline="torch_reference", optimized="cupy_dequantize_bf16",
                      bound_us=ceil.bound_us(bytes=bytes_), validation=validation))
    if progress:
        print(f"  dequantize_{M}x{K}: " + "  ".join(f"{k} {t.median_us:.1f}" for k, t in variants.items())
              + f"  bound {cases[-1].bound_us:.1f} us  mismatches {bad}")
    return cases
