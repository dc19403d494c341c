"""MLA context attention on separate Q/K/V: no k assembly, no contiguous v (blog Part 3, PR 6538).

Idea: DeepSeek-R1's context (prefill) MLA attends with q [T, H, 192] (nope 128 | rope 64) against keys
made of k_nope (a strided view into the kv_b_proj output [T, H*256]) and k_pe [T, 64] (one rope key per
token shared by all 128 heads), and values v (the other strided view). A library FMHA wants k [T, H, 192]
materialized (and often v contiguous), which costs a full write + re-read of k per layer. A kernel that
takes the three inputs with their own strides and reads k_pe per KV tile (never broadcast in memory)
saves that traffic: the "separate QKV" input layout.

Flops model (causal, one sequence of S tokens): 2 * H * S^2 * (192 + 128) / 2 (QK^T with 192-dim keys,
PV with 128-dim values, half of the square). Bytes model of the no-copy kernel: read q, k_nope, v, k_pe
once and write out; it is compute-bound from S ~ 1k on, so the bound is flops / measured bf16 peak.
Variants, in story order: `assemble_then_cudnn` (assemble k, and v contiguous if cuDNN needs it, then
torch SDPA on the cuDNN backend: the baseline), `assemble_then_own` (same assembly, then our kernel),
`own_separate` (our kernel on the separate views: the optimized). `assembly_only` and `cudnn_only` are
timed too, to show where the time goes. The kernel is Triton (workbench/techniques/separate_qkv_triton.py:
why Triton is said there and in notebooks/05_separate_qkv).
"""

from __future__ import annotations

import torch

from ..model import R1, ModelDims
from ..runtime import InputError, check_tensor
from . import knope_copy

SOURCES = ("workbench/techniques/separate_qkv.py", "workbench/techniques/separate_qkv_triton.py",
           "workbench/techniques/knope_copy.py", "knope_copy")
CASE_TOKENS = (1024, 4096, 8192, 16384)


# ---- inputs and models ----------------------------------------------------------------------------
def make_inputs(num_tokens: int, dims: ModelDims = R1, seed: int = 0, device="cuda",
                dtype=torch.bfloat16) -> dict[str, torch.Tensor]:
    """Fresh random MLA context tensors: q [T, H, Dn+Dr] contiguous, kv [T, H*(Dn+Dv)] with the strided
    views k_nope [T, H, Dn] and v [T, H, Dv] (token stride H*(Dn+Dv), head stride Dn+Dv), k_pe [T, Dr].

    Scales: q, k ~ N(0, 1) (the softmax then sees logits of std ~ sqrt(192) * 0.135 ~ 1.9, peaky enough
    to exercise the running max), v ~ N(0, 1), with outliers in kv; never zeros.
    """
    x = knope_copy.make_inputs(num_tokens, dims, seed=seed, device=device, dtype=dtype)
    g = torch.Generator(device="cpu").manual_seed(seed + 7919)
    q = torch.randn(num_tokens, dims.num_heads, dims.qk_head_dim, generator=g)
    x["q"] = q.to(device=device, dtype=dtype)
    return x


def causal_flops(seqlens, dims: ModelDims = R1) -> float:
    """2 * H * S^2 * (Dqk + Dv) / 2 summed over the sequences (the convention of baselines.md)."""
    seqlens = [seqlens] if isinstance(seqlens, int) else list(seqlens)
    return float(sum(2 * dims.num_heads * s * s * (dims.qk_head_dim + dims.v_head_dim) / 2 for s in seqlens))


def bytes_separate(num_tokens: int, dims: ModelDims = R1, elem_bytes: int = 2) -> int:
    """Minimal HBM traffic of the no-copy kernel: read q, k_nope, v, k_pe once, write out."""
    h = dims.num_heads
    return elem_bytes * num_tokens * (h * dims.qk_head_dim + h * dims.qk_nope_dim + h * dims.v_head_dim
                                      + dims.qk_rope_dim + h * dims.v_head_dim)


def seqlens_from_cu(cu_seqlens: torch.Tensor) -> list[int]:
    cu = cu_seqlens.tolist()
    return [b - a for a, b in zip(cu[:-1], cu[1:])]


def cu_seqlens_for(seqlens, device="cpu") -> torch.Tensor:
    """[0, s0, s0+s1, ...] as int32 (the varlen batch convention of FlashAttention and TRT-LLM)."""
    cu = [0]
    for s in seqlens:
        cu.append(cu[-1] + int(s))
    return torch.tensor(cu, dtype=torch.int32, device=device)


# ---- reference ---------------------------------------------------------------------------------------
def reference(q: torch.Tensor, k_nope: torch.Tensor, k_pe: torch.Tensor, v: torch.Tensor,
              cu_seqlens: torch.Tensor | None = None, scale: float = R1.softmax_scale,
              compute_dtype: torch.dtype = torch.float32, max_score_elems: int = 2**28) -> torch.Tensor:
    """Causal MLA context attention in plain torch, math in `compute_dtype` (fp32; fp64 in the tests).

    q [T, H, Dn+Dr]; k_nope [T, H, Dn] and v [T, H, Dv] with any strides; k_pe [T, Dr] (shared by the
    heads) or [T, H, Dr]; cu_seqlens int [B+1] (None: one sequence of T tokens). Returns [T, H, Dv] in
    `compute_dtype`. Heads are processed in chunks so the score matrix stays under `max_score_elems`.
    """
    t, h, dq = q.shape
    dn, dv = k_nope.shape[-1], v.shape[-1]
    if k_pe.dim() == 2:
        k_pe = k_pe[:, None, :].expand(t, h, k_pe.shape[-1])
    if dq != dn + k_pe.shape[-1]:
        raise InputError(f"q: expected head dim Dn + Dr = {dn + k_pe.shape[-1]}, got {dq}")
    bounds = [0, t] if cu_seqlens is None else [int(c) for c in cu_seqlens.tolist()]
    out = torch.empty(t, h, dv, dtype=compute_dtype, device=q.device)
    for s0, s1 in zip(bounds[:-1], bounds[1:]):
        n = s1 - s0
        if n == 0:
            continue
        causal = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
        step = max(1, min(h, max_score_elems // (n * n)))
        for h0 in range(0, h, step):
            hs = slice(h0, min(h, h0 + step))
            qh = q[s0:s1, hs].to(compute_dtype).transpose(0, 1)  # [h, n, Dq]
            kh = torch.cat([k_nope[s0:s1, hs], k_pe[s0:s1, hs]], dim=-1).to(compute_dtype).transpose(0, 1)
            vh = v[s0:s1, hs].to(compute_dtype).transpose(0, 1)  # [h, n, Dv]
            scores = (qh @ kh.transpose(1, 2)) * scale
            scores.masked_fill_(~causal, float("-inf"))
            out[s0:s1, hs] = (torch.softmax(scores, dim=-1) @ vh).transpose(0, 1)
    return out


# ---- our kernel ---------------------------------------------------------------------------------------
_CU_CACHE: dict = {}


def _single_seq_cu(t: int, device) -> torch.Tensor:
    key = (t, str(device))
    if key not in _CU_CACHE:
        _CU_CACHE[key] = torch.tensor([0, t], dtype=torch.int32, device=device)
    return _CU_CACHE[key]


def _check(q, k_nope, k_pe, v, cu_seqlens, device):
    check_tensor("q", q, dtype=torch.bfloat16, device=device, ndim=3, last_dim_contiguous=True)
    t, h, dq = q.shape
    check_tensor("k_nope", k_nope, dtype=torch.bfloat16, device=device, shape=[t, h, None], last_dim_contiguous=True)
    dn = k_nope.shape[-1]
    if k_pe.dim() == 2:
        check_tensor("k_pe", k_pe, dtype=torch.bfloat16, device=device, shape=[t, dq - dn], last_dim_contiguous=True)
    else:
        check_tensor("k_pe", k_pe, dtype=torch.bfloat16, device=device, shape=[t, h, dq - dn],
                     last_dim_contiguous=True)
    check_tensor("v", v, dtype=torch.bfloat16, device=device, shape=[t, h, None], last_dim_contiguous=True)
    for name, d in (("k_nope.shape[2]", dn), ("q.shape[2] - k_nope.shape[2]", dq - dn), ("v.shape[2]", v.shape[-1])):
        if d < 16 or d & (d - 1):
            raise InputError(f"{name}: expected a power of two >= 16 (a tile dimension), got {d}")
    if cu_seqlens is not None:
        check_tensor("cu_seqlens", cu_seqlens, dtype=torch.int32, device=device, ndim=1, contiguous=True)
        if cu_seqlens.numel() < 2:
            raise InputError(f"cu_seqlens: expected at least 2 entries [0, ..., T], got {cu_seqlens.numel()}")
    return t, h, v.shape[-1]


def attention(q: torch.Tensor, k_nope: torch.Tensor, k_pe: torch.Tensor, v: torch.Tensor,
              cu_seqlens: torch.Tensor | None = None, max_seqlen: int | None = None,
              scale: float = R1.softmax_scale, out: torch.Tensor | None = None,
              config: dict | None = None) -> torch.Tensor:
    """Causal MLA context attention on separate Q/K/V (Triton, bf16 in/out, fp32 softmax): [T, H, Dv].

    q [T, H, Dn+Dr]; k_nope [T, H, Dn] and v [T, H, Dv] as strided views (unit last stride);
    k_pe [T, Dr] shared by the heads (or [T, H, Dr]); cu_seqlens int32 [B+1] on the GPU (None: one
    sequence); max_seqlen = the longest sequence (read from cu_seqlens, one host sync, when None).
    `config` (a dict as in `separate_qkv_triton.CANDIDATES`) overrides the tuned config.
    """
    dev = "cpu" if _interpreting() else "cuda"
    t, h, dv = _check(q, k_nope, k_pe, v, cu_seqlens, dev)
    if cu_seqlens is None:
        cu_seqlens, max_seqlen = _single_seq_cu(t, q.device), t
    else:
        cu = [int(c) for c in cu_seqlens.tolist()] if max_seqlen is None else None
        if cu is not None:
            if cu[0] != 0 or cu[-1] != t or any(b < a for a, b in zip(cu[:-1], cu[1:])):
                raise InputError(f"cu_seqlens: expected non-decreasing offsets from 0 to T={t}, got {cu}")
            max_seqlen = max(b - a for a, b in zip(cu[:-1], cu[1:]))
    if out is None:
        out = torch.empty(t, h, dv, dtype=torch.bfloat16, device=q.device)
    else:
        check_tensor("out", out, dtype=torch.bfloat16, device=dev, shape=[t, h, dv], last_dim_contiguous=True)
    if t == 0 or max_seqlen == 0:
        return out
    from . import separate_qkv_triton as tk

    if _interpreting() and config is None:  # small tiles, cp.async path: the interpreter's CPU time
        config = {"BLOCK_M": 16, "BLOCK_N": 16, "num_warps": 4, "num_stages": 1}
    return tk.launch(q, k_nope, k_pe, v, out, cu_seqlens, cu_seqlens.numel() - 1, int(max_seqlen), scale, config)


def _interpreting() -> bool:
    import os

    return os.environ.get("TRITON_INTERPRET") == "1"


# ---- the pipelines compared ---------------------------------------------------------------------------
def assemble(x: dict, contiguous_v: bool) -> dict:
    """What a library FMHA needs: k [T, H, Dn+Dr] materialized (our 16-byte CuPy kernel, the fastest
    assembly we have, so the baseline is not handicapped) and, if asked, v made contiguous."""
    k = knope_copy.assemble_k(x["k_nope"], x["k_pe"])
    v = x["v"].contiguous() if contiguous_v else x["v"]
    return {"k": k, "v": v}


def cudnn_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float = R1.softmax_scale) -> torch.Tensor:
    """torch SDPA pinned to the cuDNN backend, inputs viewed as [1, H, T, D] (no copies), causal.
    Returns [T, H*Dv] (the o_proj input; a copy happens only if cuDNN's output layout needs one)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    t, h, _ = q.shape
    as4 = lambda x: x.transpose(0, 1).unsqueeze(0)  # noqa: E731  [T, H, D] -> [1, H, T, D] view
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        o = torch.nn.functional.scaled_dot_product_attention(as4(q), as4(k), as4(v), is_causal=True, scale=scale)
    return o[0].transpose(0, 1).reshape(t, h * v.shape[-1])


def pipelines(x: dict, contiguous_v_for_cudnn: bool, scale: float = R1.softmax_scale) -> dict:
    """name -> fn() returning the attention output [T, H*Dv] or [T, H, Dv], in story order."""
    q = x["q"]
    dn = x["k_nope"].shape[-1]
    pre = assemble(x, contiguous_v_for_cudnn)  # pre-assembled inputs for the kernel-only timings

    def assemble_then_cudnn():
        a = assemble(x, contiguous_v_for_cudnn)
        return cudnn_sdpa(q, a["k"], a["v"], scale)

    def assemble_then_own():
        a = assemble(x, contiguous_v_for_cudnn)
        return attention(q, a["k"][..., :dn], a["k"][..., dn:], a["v"], scale=scale)

    return {
        "assemble_then_cudnn": assemble_then_cudnn,
        "assemble_then_own": assemble_then_own,
        "own_separate": lambda: attention(q, x["k_nope"], x["k_pe"], x["v"], scale=scale),
        "assembly_only": lambda: assemble(x, contiguous_v_for_cudnn)["k"],
        "cudnn_only": lambda: cudnn_sdpa(q, pre["k"], pre["v"], scale),
    }


def cudnn_needs_contiguous_v(x: dict, scale: float = R1.softmax_scale) -> bool:
    """Probe: does SDPA's cuDNN backend accept the strided v view? (False: it runs on the view.)"""
    try:
        k = knope_copy.assemble_k(x["k_nope"], x["k_pe"])
        cudnn_sdpa(x["q"][:128], k[:128], x["v"][:128], scale)
        torch.cuda.synchronize()
        return False
    except Exception:
        return True


# ---- validation and benchmark -------------------------------------------------------------------------
def rel_l2(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double().reshape(ref.shape[0], -1), ref.double().reshape(ref.shape[0], -1)
    return float((out - ref).norm() / ref.norm())


def validate(out: torch.Tensor, ref: torch.Tensor, tol: float = 1e-2) -> dict:
    """Relative L2 error of the bf16 output against the fp32 reference, tolerance 1e-2.

    Why 1e-2: rounding the output to bf16 alone costs ~2^-9 / sqrt(3) ~ 0.1% rel-L2; rounding P to bf16
    before the P @ V product adds about as much again; inputs are bf16 in both. A correct kernel sits at
    ~0.3-0.5%, while a wrong mask, a lost tile or a bad rescale shows up at 10% or more.
    """
    err = rel_l2(out, ref)
    finite = bool(torch.isfinite(out).all())
    return {"rel_l2": err, "finite": finite, "passed": finite and err <= tol}


def benchmark(smoke: bool = False, progress: bool = True, tokens=None, dims: ModelDims = R1,
              reps: int | None = None, rounds: int = 6):
    """Cases T1024 .. T16384 (one causal sequence, H=128): every pipeline validated against the fp32
    reference on fresh random inputs, then the pipelines of a case timed in interleaved rounds
    (A, B, C, ..., A, B, C, ...: clock drift lands on every variant alike; CUDA events, warm L2: the
    working set is >> L2). Our kernel runs the tuned config (`separate_qkv_triton.tuned_config()`, or
    the one pinned with `pin_config`), compiled during validation, before any timing."""
    from ..bench import Case, current_ceilings, time_variants
    from . import separate_qkv_triton as tk

    ceil = current_ceilings()
    tokens = tokens or ((1024,) if smoke else CASE_TOKENS)
    cases = []
    contiguous_v = None
    for t in tokens:
        x = make_inputs(t, dims, seed=t + 1)
        if contiguous_v is None:
            contiguous_v = cudnn_needs_contiguous_v(x)
        ref = reference(x["q"], x["k_nope"], x["k_pe"], x["v"])
        fns, val = {}, {"passed": True}
        for name, fn in pipelines(x, contiguous_v).items():
            try:
                got = fn()
                torch.cuda.synchronize()
            except Exception as e:  # e.g. a cuDNN build that refuses these head dims: say so, go on
                val[f"{name}.error"] = repr(e)[:200]
                if progress:
                    print(f"  MLA attention T={t:6d} {name}: FAILED {e!r}"[:300])
                continue
            if name != "assembly_only":
                v = validate(got.view(t, dims.num_heads, -1), ref)
                val[f"{name}.rel_l2"] = round(v["rel_l2"], 6)
                val["passed"] &= v["passed"]
            del got
            fns[name] = fn
        n = reps or (10 if smoke else (60 if t <= 8192 else 30))
        timings = time_variants(fns, rounds=2 if smoke else rounds, reps=n, l2="warm", warmup=2)
        flops = causal_flops(t, dims)
        bound = ceil.bound_us(flops=flops, bytes=bytes_separate(t, dims))
        if progress:
            for name, tm in timings.items():
                rate = "" if name == "assembly_only" else f"{flops / tm.median_us / 1e6:7.1f} TFLOP/s"
                print(f"  MLA attention T={t:6d} {name:20s} {tm} {rate}")
        cfg = tk.tuned_config()
        baseline = "assemble_then_cudnn" if "assemble_then_cudnn" in timings else "assemble_then_own"
        cases.append(Case(
            name=f"T{t}",
            params={"tokens": t, "heads": dims.num_heads, "qk_dim": dims.qk_head_dim, "v_dim": dims.v_head_dim,
                    "flops": flops, "causal": True, "cudnn_contiguous_v": contiguous_v,
                    "triton_config": cfg, "triton_config_name": tk.config_name(cfg),
                    "bytes_separate": bytes_separate(t, dims)},
            variants=timings, baseline=baseline, optimized="own_separate", bound_us=bound,
            validation=val, bound_kind="compute"))
        del x, ref
    return cases
