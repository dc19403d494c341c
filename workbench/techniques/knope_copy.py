"""MLA context k assembly: k = [k_nope | k_pe broadcast over heads], at copy bandwidth (blog Part 3, PR 8044).

Idea: in DeepSeek-R1's context (prefill) MLA, the key of head h is k_nope[t, h] (128 values, a strided
view into the kv_b_proj output) followed by k_pe[t] (64 values, one rope key per token shared by all
128 heads). Eager PyTorch builds k [T, H, 192] with a generic strided copy/cat at a fraction of the
bandwidth; torch.compile generates a vectorized kernel for the exact strides (the blog: 306 -> 107 us);
a hand-written kernel with 16-byte accesses that reads k_pe once per token reaches the copy bound.

Bytes model (bf16): read k_nope T*H*Dn*2 + read k_pe T*Dr*2 + write k T*H*(Dn+Dr)*2; the bound is those
bytes / the measured device copy bandwidth (which counts read + write the same way).
Variants, in story order: `eager_cat` (torch.cat with the broadcast: the baseline), `eager_copy` (copy_
into a preallocated k), `torch_compile` (the same cat through Inductor), `cupy_v1` (kernels/knope_copy.cu
v1: k_pe through shared memory behind a barrier), `optimized` (v2 loads-first or v3 L1-broadcast, block
size autotuned per token bucket in the same run; the record names the kernel picked) or v4 (flat
tiles of 256 x UNROLL vectors, plain loads/stores: the copy.cu v3 mapping).
"""

from __future__ import annotations

import torch

from ..model import R1, ModelDims
from ..runtime import InputError, check_tensor, get_kernel, launch

SOURCES = ("workbench/techniques/knope_copy.py", "knope_copy")
CASE_TOKENS = (1024, 4096, 8192, 16384)
_THREADS = 256
_VEC_PER_THREAD = (1, 2, 4, 8, 12, 16)  # instantiations in kernels/knope_copy.cu


# ---- inputs ---------------------------------------------------------------------------------------
def make_inputs(num_tokens: int, dims: ModelDims = R1, seed: int = 0, device="cuda",
                dtype=torch.bfloat16) -> dict[str, torch.Tensor]:
    """Fresh random MLA context tensors for `num_tokens` tokens.

    Returns kv [T, H*(Dn+Dv)] (the kv_b_proj output, per head [k_nope | v]), its strided views
    k_nope [T, H, Dn] (token stride H*(Dn+Dv), head stride Dn+Dv) and v [T, H, Dv], and k_pe [T, Dr].
    Values ~ N(0, 1) with a few large outliers (real activations have them), never zeros.
    """
    h, dn, dv, dr = dims.num_heads, dims.qk_nope_dim, dims.v_head_dim, dims.qk_rope_dim
    g = torch.Generator(device="cpu").manual_seed(seed)
    kv = torch.randn(num_tokens, h * (dn + dv), generator=g)
    kv[:, ::97] *= 8.0  # outliers
    k_pe = torch.randn(num_tokens, dr, generator=g)
    kv, k_pe = kv.to(device=device, dtype=dtype), k_pe.to(device=device, dtype=dtype)
    heads = kv.view(num_tokens, h, dn + dv)
    return {"kv": kv, "k_nope": heads[..., :dn], "v": heads[..., dn:], "k_pe": k_pe}


def bytes_moved(num_tokens: int, dims: ModelDims = R1, elem_bytes: int = 2) -> int:
    """Read k_nope and k_pe once, write k once."""
    h, dn, dr = dims.num_heads, dims.qk_nope_dim, dims.qk_rope_dim
    return elem_bytes * (num_tokens * h * dn + num_tokens * dr + num_tokens * h * (dn + dr))


# ---- reference and eager variants -------------------------------------------------------------------
def reference(k_nope: torch.Tensor, k_pe: torch.Tensor) -> torch.Tensor:
    """k [T, H, Dn+Dr] = cat(k_nope [T, H, Dn], k_pe [T, Dr] broadcast over H). Any device, any dtype."""
    t, h, _ = k_nope.shape
    return torch.cat([k_nope, k_pe[:, None, :].expand(t, h, k_pe.shape[-1])], dim=-1)


eager_cat = reference  # the baseline is exactly what a PyTorch user writes


def eager_copy(k_nope: torch.Tensor, k_pe: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Two strided copy_ calls into a preallocated k (what TRT-LLM's eager path did before PR 8044)."""
    t, h, dn = k_nope.shape
    if out is None:
        out = torch.empty(t, h, dn + k_pe.shape[-1], dtype=k_nope.dtype, device=k_nope.device)
    out[..., :dn].copy_(k_nope)
    out[..., dn:].copy_(k_pe[:, None, :].expand(t, h, k_pe.shape[-1]))
    return out


_COMPILED = None


def compiled_cat(k_nope: torch.Tensor, k_pe: torch.Tensor) -> torch.Tensor:
    """The same cat through torch.compile (Inductor writes a pointwise Triton kernel for these strides)."""
    global _COMPILED
    if _COMPILED is None:
        _COMPILED = torch.compile(reference, dynamic=False)
    return _COMPILED(k_nope, k_pe)


# ---- the kernel --------------------------------------------------------------------------------------
def _check_inputs(k_nope, k_pe, out):
    check_tensor("k_nope", k_nope, dtype=torch.bfloat16, device="cuda", ndim=3, last_dim_contiguous=True,
                 align_bytes=16)
    t, h, dn = k_nope.shape
    check_tensor("k_pe", k_pe, dtype=torch.bfloat16, device="cuda", shape=[t, None], last_dim_contiguous=True,
                 align_bytes=16)
    dr = k_pe.shape[1]
    check_tensor("out", out, dtype=torch.bfloat16, device="cuda", shape=[t, h, dn + dr], contiguous=True,
                 align_bytes=16)
    for name, val in (("k_nope.shape[2]", dn), ("k_pe.shape[1]", dr), ("k_nope.stride(0)", k_nope.stride(0)),
                      ("k_nope.stride(1)", k_nope.stride(1)), ("k_pe.stride(0)", k_pe.stride(0))):
        if val % 8:
            raise InputError(f"{name}: expected a multiple of 8 elements (16-byte vectors), got {val}")
    if dr > 8 * 32:
        raise InputError(f"k_pe.shape[1]: expected at most 256 rope dims, got {dr}")
    row_vec = h * (dn + dr) // 8
    if row_vec > _THREADS * _VEC_PER_THREAD[-1]:
        raise InputError(f"k: expected a row of at most {_THREADS * _VEC_PER_THREAD[-1] * 8} elements, "
                         f"got H*(Dn+Dr) = {h * (dn + dr)}")
    if t >= 2**31:
        raise InputError(f"k_nope: expected fewer than 2^31 tokens, got {t}")
    return t, h, dn, dr, row_vec


# (version, threads) -> instantiated VEC_PER_THREAD values (kernels/knope_copy.cu `@instantiate` lines)
KERNELS = {
    (1, 256): (1, 2, 4, 8, 12, 16),
    (2, 256): (1, 2, 4, 8, 12, 16), (2, 384): (8,), (2, 512): (6,), (2, 768): (4,), (2, 1024): (3,),
    (3, 256): (12,), (3, 384): (8,), (3, 512): (6,), (3, 768): (4,), (3, 1024): (3,),
    # v4 (flat tiles): the second number is UNROLL (vectors per thread), blocks are always 256 threads
    (4, 2): (), (4, 4): (), (4, 8): (),
}
_NAMES = {1: "knope_assemble_v1_vec16", 2: "knope_assemble_v2_loads_first", 3: "knope_assemble_v3_l1",
          4: "knope_assemble_v4_flat"}
DEFAULT = (2, 256)
_TUNED: dict = {}  # (token bucket, H, Dn, Dr) -> (version, threads), filled by `autotune`


def _kernel_name(version: int, threads: int, row_vec: int) -> str | None:
    if version == 4:
        return f"{_NAMES[4]}<{threads}>" if (4, threads) in KERNELS else None
    vpts = KERNELS.get((version, threads), ())
    vpt = next((v for v in vpts if v * threads >= row_vec), None)
    if vpt is None:
        return None
    return f"{_NAMES[version]}<{vpt}>" if version == 1 else f"{_NAMES[version]}<{threads}, {vpt}>"


def _tune_key(t, h, dn, dr):
    return (1 << max(0, (t - 1).bit_length()), h, dn, dr)


def assemble_k(k_nope: torch.Tensor, k_pe: torch.Tensor, out: torch.Tensor | None = None,
               version: int | None = None, threads: int | None = None) -> torch.Tensor:
    """k [T, H, Dn+Dr] bf16 from k_nope [T, H, Dn] (any strides with a unit last stride, e.g. the view into
    kv_b_proj's output) and k_pe [T, Dr], with kernels/knope_copy.cu (16-byte vectors, k_pe read from
    DRAM once per token). `out` (contiguous) may be given to reuse a buffer. `version`/`threads` pick a
    kernel (default: what `autotune` chose for this size, else v2 with 256 threads). Bitwise equal to
    `reference`."""
    import numpy as np

    if out is None:
        check_tensor("k_nope", k_nope, ndim=3)
        t, h, dn = k_nope.shape
        out = torch.empty(t, h, dn + k_pe.shape[-1], dtype=k_nope.dtype, device=k_nope.device)
    t, h, dn, dr, row_vec = _check_inputs(k_nope, k_pe, out)
    if t == 0:
        return out
    if version is None:
        version, threads = _TUNED.get(_tune_key(t, h, dn, dr), DEFAULT)
    name = _kernel_name(version, threads or 256, row_vec)
    if name is None:  # no instantiation of that block size for this row width: the generic v2
        version, threads = DEFAULT
        name = _kernel_name(*DEFAULT, row_vec)
    fn = get_kernel("knope_copy", name)
    if version == 4:
        if t * row_vec >= 2**31:
            raise InputError(f"k: v4 indexes vectors with 32 bits; T * H * (Dn+Dr) / 8 = {t * row_vec} is too many")
        grid, block = (t * row_vec + 256 * threads - 1) // (256 * threads), 256
    else:
        grid, block = t, threads or 256
    launch(fn, grid, block, (k_nope, k_pe, out, t, h, dn, dr, np.int64(k_nope.stride(0)), k_nope.stride(1),
                             np.int64(k_pe.stride(0))))
    return out


def autotune(k_nope: torch.Tensor, k_pe: torch.Tensor, out: torch.Tensor, progress: bool = False) -> dict:
    """Time every (version, threads) kernel of v2/v3 on these inputs (cold L2), validate each, and remember
    the fastest for this token bucket (like Triton's autotuner). Returns {"version", "threads", "times_us"}."""
    from ..bench import time_cuda

    t, h, dn, dr, row_vec = _check_inputs(k_nope, k_pe, out)
    ref = reference(k_nope, k_pe)
    times = {}
    for (version, threads) in KERNELS:
        if version == 1 or _kernel_name(version, threads, row_vec) is None:
            continue
        out.fill_(float("nan"))
        assemble_k(k_nope, k_pe, out, version, threads)
        if not validate(out, ref)["passed"]:
            raise RuntimeError(f"knope_copy v{version} with {threads} threads: output differs from eager cat")
        tm = time_cuda(lambda v=version, th=threads: assemble_k(k_nope, k_pe, out, v, th), reps=15, l2="flush")
        times[f"v{version}_{threads}"] = round(tm.median_us, 2)
        if progress:
            print(f"  tune T={t} v{version} threads {threads}: {tm}")
    best = min(times, key=times.get)
    version, threads = int(best[1]), int(best.split("_")[1])
    _TUNED[_tune_key(t, h, dn, dr)] = (version, threads)
    return {"version": version, "threads": threads, "times_us": times}


# ---- validation and benchmark ------------------------------------------------------------------------
def validate(out: torch.Tensor, ref: torch.Tensor) -> dict:
    """Bitwise equality with the eager cat: assembling k moves data and must not change a single bit."""
    if out.shape != ref.shape:
        return {"mismatched_elements": -1, "passed": False}
    mism = int((out.view(torch.int16) != ref.view(torch.int16)).sum())
    return {"mismatched_elements": mism, "passed": mism == 0}


def variants() -> dict:
    """name -> fn(k_nope, k_pe, out) returning k, in story order (out is a preallocated, poisoned k)."""
    return {
        "eager_cat": lambda kn, kp, out: eager_cat(kn, kp),
        "eager_copy": lambda kn, kp, out: eager_copy(kn, kp, out),
        "torch_compile": lambda kn, kp, out: compiled_cat(kn, kp),
        "cupy_v1": lambda kn, kp, out: assemble_k(kn, kp, out, version=1, threads=256),
        "optimized": lambda kn, kp, out: assemble_k(kn, kp, out),
    }


def benchmark(smoke: bool = False, progress: bool = True, tokens=None, dims: ModelDims = R1):
    """Cases T1024 .. T16384: eager_cat (baseline), eager_copy, torch_compile, optimized; each validated
    bitwise against eager_cat on fresh random inputs before it is timed (cold L2 before every sample)."""
    from ..bench import Case, current_ceilings, time_cuda

    ceil = current_ceilings()
    tokens = tokens or ((1024,) if smoke else CASE_TOKENS)
    cases = []
    for t in tokens:
        x = make_inputs(t, dims, seed=t)
        ref = reference(x["k_nope"], x["k_pe"])
        tuned = autotune(x["k_nope"], x["k_pe"], torch.empty_like(ref), progress=progress)
        timings, val = {}, {"passed": True}
        for name, fn in variants().items():
            out = torch.full_like(ref, float("nan"))  # poison: an unwritten element shows as a mismatch
            got = fn(x["k_nope"], x["k_pe"], out)
            torch.cuda.synchronize()
            v = validate(got, ref)
            val[f"{name}.mismatched_elements"] = v["mismatched_elements"]
            val["passed"] &= v["passed"]
            timings[name] = time_cuda(lambda fn=fn, out=out, kn=x["k_nope"], kp=x["k_pe"]: fn(kn, kp, out),
                                      reps=10 if smoke else 30, l2="flush")
        bytes_ = bytes_moved(t, dims)
        bound = ceil.bound_us(bytes=bytes_)
        if progress:
            for name, tm in timings.items():
                print(f"  k assembly T={t:6d} {name:14s} {tm}  {tm.median_us / bound:5.2f}x bound "
                      f"({bound:.1f} us)")
        cases.append(Case(name=f"T{t}", params={"tokens": t, "heads": dims.num_heads, "nope_dim": dims.qk_nope_dim,
                                               "rope_dim": dims.qk_rope_dim, "bytes_moved": bytes_,
                                               "optimized_kernel": (f"v4 flat, {tuned['threads']} vectors/thread" if tuned["version"] == 4
                                                                    else f"v{tuned['version']}, {tuned['threads']} threads"),
                                               "tuning_us": tuned["times_us"]},
                          variants=timings, baseline="eager_cat", optimized="optimized", bound_us=bound,
                          validation=val))
        del x, ref
    return cases
