"""Technique 6: noaux_tc routing + all-to-all prepare, reference on CPU and kernels on GPU (PDL off/on)."""

import math

import pytest
import torch

from workbench.runtime import InputError
from workbench.techniques import pdl_routing as P


def _ref(inp):
    return P.reference(inp["logits"], inp["bias"], inp["ep_size"], inp["peer_counts"], inp["max_tokens_per_rank"])


@pytest.mark.parametrize("t,ep,ties", [(6, 8, False), (13, 32, False), (9, 1, True), (4, 256, False),
                                       (11, 8, True), (5, 64, True)])
def test_reference_matches_per_token_loops(t, ep, ties):
    inp = P.make_inputs(t, ep, seed=10 * t + ep, device="cpu", ties=ties)
    ref, loops = _ref(inp), P.reference_loops(inp["logits"], inp["bias"], ep, inp["peer_counts"])
    assert torch.equal(ref["expert_ids"], torch.from_numpy(loops["expert_ids"]))
    assert torch.equal(ref["weights"], torch.from_numpy(loops["weights"]))  # same fp32 operations, same order
    assert ref["send_counts"].tolist() == loops["send_counts"]
    total = int(ref["send_offsets"][-1])
    assert ref["send_index"][:total].tolist() == loops["send_index"]
    assert ref["backward_index"][:total].tolist() == loops["backward_index"]
    assert ref["recv_counts"].tolist() == loops["recv_counts"]
    assert ref["recv_index"][: loops["total_recv"]].tolist() == loops["recv_index"]


def test_weights_within_fp32_rounding_of_fp64():
    inp = P.make_inputs(300, 8, seed=3, device="cpu")
    ids, w = P.reference_routing(inp["logits"], inp["bias"])
    w64 = P.reference_weights_fp64(inp["logits"], ids)
    rel = ((w.double() - w64).abs() / w64).max().item()
    assert rel < 1e-6  # a dozen fp32 roundings at most: ~12 * 2^-24 = 7e-7
    assert torch.allclose(w.double().sum(1), torch.full((300,), 2.5, dtype=torch.float64), rtol=1e-6)


def test_routing_rules_on_a_constructed_token():
    # Group 0 holds the single best expert but a weak second; groups 1..4 have two good experts each.
    logits = torch.full((1, 256), -4.0)
    logits[0, 5] = 6.0  # group 0: one very high score
    for g, base in zip((1, 2, 3, 4), (3.0, 2.9, 2.8, 2.7)):
        logits[0, 32 * g + 1] = base
        logits[0, 32 * g + 2] = base - 0.1
    bias = torch.zeros(256)
    ids, w = P.reference_routing(logits, bias)
    s = torch.sigmoid(torch.tensor([6.0, -4.0])).tolist()
    top2_g0 = s[0] + s[1]
    top2_g4 = P.sigmoid_rn(torch.tensor([2.7])).item() + P.sigmoid_rn(torch.tensor([2.6])).item()
    assert top2_g4 > top2_g0  # so group 0 is dropped although it has the best single expert
    assert 5 not in ids[0].tolist()
    assert sorted(ids[0].tolist()) == [33, 34, 65, 66, 97, 98, 129, 130]
    assert ids[0].tolist()[:2] == [33, 34]  # descending biased score
    assert abs(w.sum().item() - 2.5) < 1e-6


def test_tie_break_lower_index_wins():
    logits = torch.zeros(2, 256)
    logits[1] = 0.5
    bias = torch.zeros(256)
    ids, w = P.reference_routing(logits, bias)
    # All scores equal: groups 0..3 are kept, experts 0..7 picked in index order, equal weights.
    assert ids.tolist() == [list(range(8))] * 2
    assert torch.equal(w, torch.full((2, 8), w[0, 0].item()))
    assert math.isclose(w[0, 0].item(), 2.5 / 8, rel_tol=1e-6)


def test_bias_selects_but_does_not_weight():
    logits = torch.zeros(1, 256)
    bias = torch.zeros(256)
    bias[200:208] = 1.0  # group 6 wins through the bias only
    ids, w = P.reference_routing(logits, bias)
    assert ids[0].tolist() == list(range(200, 208))
    assert torch.allclose(w, torch.full((1, 8), 2.5 / 8))  # unbiased scores are all sigmoid(0)


def test_prepare_hand_example():
    ids = torch.tensor([[0, 40, 33, 1, 2, 3, 4, 5],  # ranks (E=8, 32 experts each): 0,1,1,0,0,0,0,0
                        [255, 254, 100, 101, 102, 103, 104, 105],  # ranks 7,7,3,3,3,3,3,3
                        [64, 65, 66, 67, 68, 69, 70, 32]], dtype=torch.int32)  # ranks 2 x7, 1
    peer = torch.tensor([1, 0, 5, 2, -1, 9, 0, 3], dtype=torch.int32)
    out = P.reference_prepare(ids, 8, peer, 3)
    assert out["send_counts"].tolist() == [1, 2, 1, 1, 0, 0, 0, 1]
    assert out["send_offsets"].tolist() == [0, 1, 3, 4, 5, 5, 5, 5, 6]
    assert out["send_index"].tolist()[:6] == [0, 0, 2, 2, 1, 1]
    # backward index = token * 8 + first k on that rank
    assert out["backward_index"].tolist()[:6] == [0, 1, 2 * 8 + 7, 2 * 8 + 0, 1 * 8 + 2, 1 * 8 + 0]
    assert out["recv_counts"].tolist() == [1, 0, 3, 2, 0, 3, 0, 3]  # clamped to [0, M=3]
    assert out["recv_offsets"].tolist() == [0, 1, 1, 4, 6, 6, 9, 9, 12]
    assert out["recv_index"].tolist()[:12] == [0, 6, 7, 8, 9, 10, 15, 16, 17, 21, 22, 23]
    assert (out["recv_expert_ids"][12:] == P.SENTINEL).all() and (out["recv_expert_ids"][:12] == -1).all()


def test_out_of_range_ids_are_ignored():
    ids = torch.tensor([[-1, 256, 1000, -300, 7, 7, 7, 7], [-1] * 8], dtype=torch.int32)
    out = P.reference_prepare(ids, 8, torch.zeros(8, dtype=torch.int32), 2)
    assert out["send_counts"].tolist() == [1, 0, 0, 0, 0, 0, 0, 0]
    assert out["backward_index"][:1].tolist() == [4]  # k = 4 is the first valid id on rank 0


def test_zero_tokens_is_a_defined_result():
    inp = P.make_inputs(0, 8, seed=1, device="cpu", max_tokens_per_rank=4)
    out = _ref(inp)
    assert out["expert_ids"].shape == (0, 8) and out["weights"].shape == (0, 8)
    assert out["send_counts"].tolist() == [0] * 8 and out["send_offsets"].tolist() == [0] * 9
    assert out["recv_counts"].tolist() == inp["peer_counts"].clamp(0, 4).tolist()


@pytest.mark.parametrize("ep", [0, 3, 24, 512, -8, 2.0, True])
def test_ep_size_must_divide_256(ep):
    with pytest.raises(InputError, match="ep_size"):
        P.check_ep_size(ep)
    ids = torch.zeros(2, 8, dtype=torch.int32)
    with pytest.raises(InputError, match="ep_size"):
        P.reference_prepare(ids, ep, torch.zeros(8, dtype=torch.int32), 2)


def test_bad_tensors_name_the_argument():
    with pytest.raises(InputError, match="logits: expected dtype"):
        P.reference_routing(torch.zeros(2, 256, dtype=torch.float16), torch.zeros(256))
    with pytest.raises(InputError, match="logits: expected shape"):
        P.reference_routing(torch.zeros(2, 128), torch.zeros(256))
    with pytest.raises(InputError, match="bias"):
        P.reference_routing(torch.zeros(2, 256), torch.zeros(255))
    with pytest.raises(InputError, match="peer_counts"):
        P.reference_prepare(torch.zeros(2, 8, dtype=torch.int32), 8, torch.zeros(4, dtype=torch.int32), 2)
    with pytest.raises(InputError, match="max_tokens_per_rank"):
        P.reference_prepare(torch.zeros(2, 8, dtype=torch.int32), 8, torch.zeros(8, dtype=torch.int32), -1)


def test_kernels_compile_without_spills():
    pytest.importorskip("cuda.bindings.nvrtc")
    from workbench.runtime import compile_kernel

    c = compile_kernel("routing")
    names = {r.name for r in c.resources.values()}
    assert set(P.KERNELS) <= names
    assert not any(r.spills for r in c.resources.values())


def test_decode_step_savings_and_bytes():
    rec = {"cases": [{"name": "T32_E8", "variants": {v: {"median_us": x} for v, x in
                      (("pdl_off", 10.0), ("pdl_on", 7.0), ("graph_pdl_off", 8.0), ("graph_pdl_on", 6.0))}}]}
    row = P.decode_step_savings(rec)[0]
    assert row["eager saving / layer (us)"] == 3.0
    assert row["eager saving / step, 58 MoE layers (us)"] == 174.0
    assert sum(P.chain_bytes(128, 8).values()) < 1e6


# ---------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.parametrize("pdl", [False, True])
def test_chain_matches_reference(pdl):
    for t, ep in ((32, 8), (128, 32), (1000, 4), (1, 256)):
        inp = P.make_inputs(t, ep, seed=t + ep)
        poison = torch.full((ep * t, 8), -3, dtype=torch.int32, device="cuda")
        out = P.route_and_prepare(inp["logits"], inp["bias"], ep, inp["peer_counts"], pdl=pdl,
                                  recv_expert_ids=poison)
        torch.cuda.synchronize()
        ref = P.reference(inp["logits"].cpu(), inp["bias"].cpu(), ep, inp["peer_counts"].cpu(), t,
                          recv_expert_ids=poison.cpu())
        cmp = P.compare_outputs(out, ref)
        assert cmp["passed"], (t, ep, cmp)


@pytest.mark.gpu
def test_stress_pdl_on_off_bitwise():
    s = P.stress_validate(n_iter=100, seed=99)
    assert s["passed"], s


@pytest.mark.gpu
def test_slow_predecessor_wait_holds_and_negative_control_fails():
    r = P.slow_predecessor_check(spin_us=100.0)
    assert r["overlapped"], r  # the routing kernel really started while the producer was spinning
    assert r["passed"], r
    neg = P.slow_predecessor_check(spin_us=100.0, skip_wait=True)
    assert not neg["correct"], neg  # without the wait it reads the stale logits: the test can see it


@pytest.mark.gpu
def test_out_of_range_ids_on_gpu():
    assert P.prepare_out_of_range_check()["passed"]


@pytest.mark.gpu
def test_ep_not_dividing_256_on_gpu():
    with pytest.raises(InputError, match="ep_size"):
        P.RoutingChain(32, 24)
