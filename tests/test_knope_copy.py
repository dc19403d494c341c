"""k assembly (technique 9): reference layout, eager variants, bytes model, bad input; the kernel on a GPU."""

import pytest
import torch

from workbench.model import R1, SMALL
from workbench.runtime import InputError, compile_kernel
from workbench.techniques import knope_copy as K


def test_inputs_are_strided_views_of_kv():
    x = K.make_inputs(5, SMALL, seed=1, device="cpu")
    h, dn, dv = SMALL.num_heads, SMALL.qk_nope_dim, SMALL.v_head_dim
    assert x["k_nope"].stride() == (h * (dn + dv), dn + dv, 1)
    assert x["v"].stride() == (h * (dn + dv), dn + dv, 1)
    assert x["v"].data_ptr() == x["kv"].data_ptr() + dn * 2
    assert bool((x["kv"] != 0).all())


def test_reference_layout_exact():
    x = K.make_inputs(7, SMALL, seed=2, device="cpu")
    k = K.reference(x["k_nope"], x["k_pe"])
    dn = SMALL.qk_nope_dim
    assert k.shape == (7, SMALL.num_heads, SMALL.qk_head_dim) and k.is_contiguous()
    for t in range(7):
        for h in range(SMALL.num_heads):
            assert torch.equal(k[t, h, :dn], x["kv"][t, h * 2 * dn: h * 2 * dn + dn])
            assert torch.equal(k[t, h, dn:], x["k_pe"][t])


def test_eager_copy_is_bitwise_equal_to_cat():
    x = K.make_inputs(33, SMALL, seed=3, device="cpu")
    ref = K.reference(x["k_nope"], x["k_pe"])
    out = torch.full_like(ref, float("nan"))
    got = K.eager_copy(x["k_nope"], x["k_pe"], out)
    assert K.validate(got, ref) == {"mismatched_elements": 0, "passed": True}


def test_validate_catches_one_flipped_bit():
    x = K.make_inputs(4, SMALL, seed=4, device="cpu")
    ref = K.reference(x["k_nope"], x["k_pe"])
    bad = ref.clone()
    bad.view(torch.int16)[1, 2, 3] ^= 1
    assert K.validate(bad, ref) == {"mismatched_elements": 1, "passed": False}


def test_bytes_model_r1_t8192():
    # read k_nope 8192*128*128*2 + k_pe 8192*64*2, write k 8192*128*192*2
    assert K.bytes_moved(8192, R1) == 268435456 + 1048576 + 402653184


def test_assemble_rejects_cpu_and_wrong_dtype():
    x = K.make_inputs(4, SMALL, seed=5, device="cpu")
    with pytest.raises(InputError, match="k_nope"):
        K.assemble_k(x["k_nope"], x["k_pe"])
    with pytest.raises(InputError, match="k_nope: expected dtype"):
        K.assemble_k(x["k_nope"].float(), x["k_pe"])


def test_kernel_compiles_for_sm90a_without_spills():
    ck = compile_kernel("knope_copy")
    for version, threads in K.KERNELS:
        name = K._kernel_name(version, threads, R1.num_heads * R1.qk_head_dim // 8)
        if name is not None:
            assert not ck.resources_for(name).spills, name


@pytest.mark.gpu
@pytest.mark.parametrize("dims,tokens", [(SMALL, 37), (R1, 300)])
def test_kernel_bitwise_equal_to_eager(dims, tokens):
    x = K.make_inputs(tokens, dims, seed=6)
    ref = K.reference(x["k_nope"], x["k_pe"])
    for version, threads in K.KERNELS:
        out = torch.full_like(ref, float("nan"))
        K.assemble_k(x["k_nope"], x["k_pe"], out, version, threads)
        torch.cuda.synchronize()
        assert K.validate(out, ref)["passed"], (version, threads)
    assert K.validate(K.compiled_cat(x["k_nope"], x["k_pe"]), ref)["passed"]


@pytest.mark.gpu
def test_kernel_rejects_misaligned_view():
    x = K.make_inputs(8, SMALL, seed=7)
    with pytest.raises(InputError, match="k_nope"):
        K.assemble_k(x["k_nope"][..., 1:], x["k_pe"][:, 1:])
