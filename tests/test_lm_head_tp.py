"""TP LM head with a distributed argmax: heuristic, reference vs fp64 brute force, the algorithm in one process,
and every variant on gloo ranks (2 and 4) against the single-rank argmax, with padding rows and planted ties."""

import pytest
import torch

from workbench.runtime import InputError
from workbench.runtime import dist as D
from workbench.techniques import lm_head_tp as L


@pytest.mark.parametrize("b,gpus,want", [(32, 4, 4), (32, 8, 8), (128, 8, 2), (256, 8, 1), (512, 8, 1), (48, 8, 8),
                                         (1, 8, 8), (64, 4, 4), (100, 8, 2)])
def test_tp_size_heuristic(b, gpus, want):
    assert L.tp_size(b, gpus) == want


def test_tp_size_rejects_bad_input():
    with pytest.raises(InputError, match="tokens_per_rank"):
        L.tp_size(0, 8)


@pytest.mark.parametrize("vocab,tp", [(129280, 4), (129280, 8), (1000, 3), (7, 4)])
def test_slices_cover_the_vocabulary(vocab, tp):
    spans = [L.slice_bounds(vocab, tp, r) for r in range(tp)]
    assert spans[0][0] == 0 and spans[-1][1] == vocab
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def test_cost_model_r1_numbers():
    c = L.cost_model(32, 4)
    assert c["weight_bytes"] == 32320 * 7168 * 2  # 463 MB per rank, a quarter of 1.853 GB
    assert c["flops"] == 2 * 128 * 32320 * 7168 and c["intensity_flop_per_byte"] == 128
    assert L.crossover_tokens(3.35, 989) == pytest.approx(295.2, abs=0.1)


@pytest.mark.parametrize("kind", ["gaussian", "grid"])
def test_reference_matches_brute_force_fp64_with_ties_and_padding(kind):
    w = L.make_weight(300, 32, seed=3, kind=kind)
    x = L.make_hidden(6, 4, w, seed=4, kind=kind)
    logits = x.double() @ w.double().T
    want = torch.tensor([min(i for i in range(300) if logits[r, i] == logits[r].max()) for r in range(6)])
    got = L.reference(x, w, chunk=64)  # chunked, so ties across chunks are exercised too
    assert torch.equal(got, want)
    assert got[4:].tolist() == [0, 0]  # zero padding rows: every logit 0 -> id 0
    for row, i in L.expected_tie_ids(300, 4).items():
        assert got[row] == i and logits[row, i] == logits[row, [j for a, j in L.tie_pairs(300) if a == i][0]]


@pytest.mark.parametrize("kind", ["gaussian", "grid"])
@pytest.mark.parametrize("tp", [1, 2, 4, 3])
def test_simulated_tp_equals_reference(kind, tp):
    w = L.make_weight(1001, 48, seed=5, kind=kind)
    xs = [L.make_hidden(5, 3, w, seed=6, rank=r, kind=kind) for r in range(tp)]
    for r, ids in enumerate(L.simulate_tp(xs, w, tp)):
        v = L.validate(ids, xs[r], w, 3, kind)
        assert v["passed"] and v["mismatches"] == 0, v
        assert torch.equal(ids, L.full_vocab(xs[r], w))


def test_validate_catches_a_wrong_tie_break_and_unwritten_padding():
    w = L.make_weight(500, 32, seed=7, kind="grid")
    x = L.make_hidden(4, 3, w, seed=8, kind="grid")
    ids = L.reference(x, w).to(torch.int32)
    assert L.validate(ids, x, w, 3, "grid")["passed"]
    bad = ids.clone()
    bad[0] = L.tie_pairs(500)[0][1]  # the higher id of an exact tie
    v = L.validate(bad, x, w, 3, "grid")
    assert not v["passed"] and not v["ties_lowest_id"]
    bad = ids.clone()
    bad[3] = 17
    assert not L.validate(bad, x, w, 3, "grid")["padding_rows_zero"]


def test_make_hidden_rejects_bad_n_valid():
    w = L.make_weight(100, 16)
    with pytest.raises(InputError, match="n_valid"):
        L.make_hidden(4, 5, w)


def _check(res):
    for r in res:
        for run in r["runs"]:
            for name, v in run["validation"].items():
                assert v["passed"] and v["mismatches"] == 0, (r["rank"], run["kind"], name, v)
            assert torch.equal(run["nccl_tp"], run["full_1gpu"]) and torch.equal(run["own_tp"], run["full_1gpu"])
            assert run["own_tp"][6:].tolist() == [0, 0]  # padding rows


def test_gloo_two_ranks_every_variant_equals_single_rank():
    _check(D.spawn(L.run_ranks, 2, backend="gloo", timeout_s=60))


def test_gloo_four_ranks_tp4_and_tp2_groups():
    _check(D.spawn(L.run_ranks, 4, backend="gloo", timeout_s=90))
    _check(D.spawn(L.run_ranks, 4, tp=2, kinds=("grid",), steps=1, backend="gloo", timeout_s=90))


def test_head_rejects_bad_input():
    with pytest.raises(InputError, match="impl"):
        L.TPLMHead(None, torch.zeros(4, 4, dtype=torch.bfloat16), 2, 1, impl="mpi")


@pytest.mark.gpu
def test_gpu_ranks_every_variant_equals_single_gpu():
    n = torch.cuda.device_count()
    if n < 2:
        pytest.skip("needs 2 GPUs")
    _check(D.spawn(L.run_ranks, min(n, 4), backend="nccl", timeout_s=180))
