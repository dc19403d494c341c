"""Separate-Q/K/V MLA context attention (technique 5): the reference against fp64 and a naive loop,
varlen, the flops model, bad input; the Triton kernel's logic through Triton's interpreter (fp32, where
triton is installed); the kernel itself on a GPU."""

import importlib.util
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from workbench.model import R1, SMALL
from workbench.runtime import InputError
from workbench.techniques import separate_qkv as S

ROOT = Path(__file__).resolve().parents[1]
SCALE = SMALL.softmax_scale


def naive(q, k_nope, k_pe, v, cu, scale):
    """Token-by-token fp64 loop: the definition of causal MLA attention, nothing vectorized."""
    q, k_nope, k_pe, v = q.double(), k_nope.double(), k_pe.double(), v.double()
    t, h, _ = q.shape
    out = torch.zeros(t, h, v.shape[-1], dtype=torch.float64)
    for s0, s1 in zip(cu[:-1], cu[1:]):
        for i in range(s0, s1):
            for hh in range(h):
                keys = torch.cat([k_nope[s0:i + 1, hh], k_pe[s0:i + 1]], dim=-1)
                p = torch.softmax(keys @ q[i, hh] * scale, dim=0)
                out[i, hh] = p @ v[s0:i + 1, hh]
    return out


def test_softmax_scale_r1():
    assert R1.softmax_scale == pytest.approx(0.135234, abs=1e-6)


def test_reference_matches_naive_fp64_varlen():
    x = S.make_inputs(23, SMALL, seed=1, device="cpu")
    cu = [0, 9, 9, 20, 23]
    ref = S.reference(x["q"], x["k_nope"], x["k_pe"], x["v"], S.cu_seqlens_for([9, 0, 11, 3]), scale=SCALE,
                      compute_dtype=torch.float64)
    assert (ref - naive(x["q"], x["k_nope"], x["k_pe"], x["v"], cu, SCALE)).abs().max() < 1e-12


def test_reference_fp32_close_to_fp64():
    x = S.make_inputs(64, SMALL, seed=2, device="cpu")
    r32 = S.reference(x["q"], x["k_nope"], x["k_pe"], x["v"], scale=SCALE)
    r64 = S.reference(x["q"], x["k_nope"], x["k_pe"], x["v"], scale=SCALE, compute_dtype=torch.float64)
    assert S.rel_l2(r32, r64) < 1e-6


def test_reference_head_chunking_and_per_head_kpe_agree():
    x = S.make_inputs(40, SMALL, seed=3, device="cpu")
    a = S.reference(x["q"], x["k_nope"], x["k_pe"], x["v"], scale=SCALE)
    b = S.reference(x["q"], x["k_nope"], x["k_pe"], x["v"], scale=SCALE, max_score_elems=1)  # one head at a time
    kpe_heads = x["k_pe"][:, None].expand(-1, SMALL.num_heads, -1)
    c = S.reference(x["q"], x["k_nope"], kpe_heads, x["v"], scale=SCALE)
    assert torch.equal(a, b) and torch.equal(a, c)


def test_reference_is_causal():
    x = S.make_inputs(30, SMALL, seed=4, device="cpu")
    a = S.reference(x["q"], x["k_nope"], x["k_pe"], x["v"], scale=SCALE)
    kv2 = x["kv"].clone()
    kv2[20:] = torch.randn_like(kv2[20:])  # change the future keys/values only
    h, dn = SMALL.num_heads, SMALL.qk_nope_dim
    heads = kv2.view(30, h, -1)
    b = S.reference(x["q"], heads[..., :dn], x["k_pe"], heads[..., dn:], scale=SCALE)
    assert torch.equal(a[:20], b[:20]) and not torch.equal(a[20:], b[20:])


def test_flops_model():
    # 2 * H * S^2 * (192 + 128) / 2 at S = 8192, H = 128
    assert S.causal_flops(8192) == 2 * 128 * 8192**2 * 320 / 2
    assert S.causal_flops([100, 50], SMALL) == S.causal_flops(100, SMALL) + S.causal_flops(50, SMALL)


def test_validate_tolerance_catches_a_dropped_tile():
    x = S.make_inputs(64, SMALL, seed=5, device="cpu")
    ref = S.reference(x["q"], x["k_nope"], x["k_pe"], x["v"], scale=SCALE)
    assert S.validate(ref.bfloat16(), ref)["passed"]  # bf16 rounding of the output alone passes
    bad = ref.clone()
    bad[32:48] = S.reference(x["q"][32:48], x["k_nope"][32:48], x["k_pe"][32:48], x["v"][32:48], scale=SCALE)
    assert not S.validate(bad.bfloat16(), ref)["passed"]


def test_attention_rejects_bad_input():
    x = S.make_inputs(8, SMALL, seed=6, device="cpu")
    with pytest.raises(InputError, match="q: expected dtype"):
        S.attention(x["q"].float(), x["k_nope"], x["k_pe"], x["v"])
    with pytest.raises(InputError, match="q: expected a cuda tensor"):
        S.attention(x["q"], x["k_nope"], x["k_pe"], x["v"])


# Kernel paths the interpreter checks, at tile sizes it runs in seconds: cp.async and TMA loads, the
# hand-pipelined loop (tiles before, inside and past a 2-tile query block), lazy rescale, head-major grid,
# unrolled loop; each on one sequence and on a varlen batch with an empty sequence.
INTERPRETER_CONFIGS = [
    dict(BLOCK_M=16, BLOCK_N=16),
    dict(BLOCK_M=32, BLOCK_N=16),
    dict(BLOCK_M=16, BLOCK_N=16, TMA=True),
    dict(BLOCK_M=32, BLOCK_N=16, TMA=True, PREFETCH_QK=True),
    dict(BLOCK_M=16, BLOCK_N=16, TMA=True, PREFETCH_QK=True, HEAD_MAJOR=True),
    dict(BLOCK_M=32, BLOCK_N=16, TMA=True, LAZY_RESCALE=True, UNROLL=2),
    dict(BLOCK_M=16, BLOCK_N=16, LAZY_RESCALE=True),
]


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
def test_kernel_logic_in_triton_interpreter():
    """The Triton kernel's tiling, causal split, online softmax (eager and lazy rescale), TMA windows over
    the strided views, the hand-pipelined loop and varlen handling, run by Triton's CPU interpreter in
    fp32 (the interpreter's bf16 dot is not faithful), in a subprocess because TRITON_INTERPRET must be
    set before triton is imported. The per-head k_pe of the assembled layout goes through too."""
    code = textwrap.dedent(f"""
        import numpy as np, torch
        import triton.runtime.interpreter as I
        _orig = I._patch_lang_tensor
        def _patched(tensor, scope):  # numpy >= 2.3 refuses int() of a 1-element array
            _orig(tensor, scope)
            scope.set_attr(tensor, "__index__", lambda self: int(np.asarray(self.handle.data).reshape(-1)[0]))
        I._patch_lang_tensor = _patched
        from workbench.model import SMALL
        from workbench.techniques import separate_qkv as S, separate_qkv_triton as tk
        x = S.make_inputs(80, SMALL, seed=1, device="cpu", dtype=torch.float32)
        # logits large enough that the running max grows by more than the lazy threshold mid-row
        x["q"] *= 4.0
        kpe_heads = x["k_pe"][:, None].expand(-1, SMALL.num_heads, -1)
        for lens in ([80], [30, 0, 17, 33]):
            cu = S.cu_seqlens_for(lens)
            ref = S.reference(x["q"], x["k_nope"], x["k_pe"], x["v"], cu, scale={SCALE!r})
            for cfg in {INTERPRETER_CONFIGS!r}:
                for kpe in (x["k_pe"], kpe_heads):
                    out = torch.full((80, SMALL.num_heads, SMALL.v_head_dim), float("nan"))
                    tk.launch(x["q"], x["k_nope"], kpe, x["v"], out, cu, len(lens), max(lens), {SCALE!r},
                              dict(num_warps=4, num_stages=1, **cfg))
                    err = S.rel_l2(out, ref)
                    assert err < 1e-5, (lens, cfg, kpe.dim(), err)
        print("ok")
    """)
    path = os.pathsep.join([str(ROOT), *(p for p in [os.environ.get("PYTHONPATH")] if p)])
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]


def test_configs_are_well_formed():
    """Every sweep candidate names the knobs the kernel takes, keeps BLOCK_M a multiple of BLOCK_N, and
    fits Hopper's 227 KB of shared memory by the ring-buffer estimate (q once, K and V per stage)."""
    pytest.importorskip("triton")
    from workbench.techniques import separate_qkv_triton as tk

    names = set()
    for c in tk.CANDIDATES:
        assert set(c) - {"maxnreg"} == {"BLOCK_M", "BLOCK_N", "num_warps", "num_stages", *tk._BASE}
        assert c["BLOCK_M"] % c["BLOCK_N"] == 0 and c["num_warps"] * 16 >= c["BLOCK_M"]
        assert not (c["PREFETCH_QK"] and not c["TMA"])
        kv_stage = c["BLOCK_N"] * (192 + 128) * 2
        assert c["BLOCK_M"] * 192 * 2 + c["num_stages"] * kv_stage <= 227 * 1024, tk.config_name(c)
        names.add(tk.config_name(c))
    assert len(names) == len(tk.CANDIDATES)  # labels are unique
    assert tk.PREVIOUS_DEFAULT in tk.CANDIDATES


@pytest.mark.gpu
@pytest.mark.parametrize("lens", [[1024], [1000, 100, 0, 2047, 949], [1, 2, 3, 250]])
def test_kernel_matches_reference(lens):
    t = sum(lens)
    x = S.make_inputs(t, R1, seed=len(lens))
    cu = S.cu_seqlens_for(lens, device="cuda")
    ref = S.reference(x["q"], x["k_nope"], x["k_pe"], x["v"], cu)
    out = torch.full((t, R1.num_heads, R1.v_head_dim), float("nan"), dtype=torch.bfloat16, device="cuda")
    S.attention(x["q"], x["k_nope"], x["k_pe"], x["v"], cu_seqlens=cu, out=out)
    assert S.validate(out, ref)["passed"]


@pytest.mark.gpu
def test_kernel_on_assembled_inputs_matches():
    x = S.make_inputs(777, R1, seed=9)
    ref = S.reference(x["q"], x["k_nope"], x["k_pe"], x["v"])
    a = S.assemble(x, contiguous_v=True)
    out = S.attention(x["q"], a["k"][..., :128], a["k"][..., 128:], a["v"])
    assert S.validate(out, ref)["passed"]
    assert math.isfinite(S.rel_l2(out, ref))
