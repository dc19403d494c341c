"""Multi-process runtime on CPU (gloo, 2 and 4 ranks): spawn, store barrier, peer-buffer protocol, timeouts.

The peer collectives run their CPU model here (shared memory, same layout and step/flag protocol as
kernels/peer.cu); the kernels themselves are exercised by the GPU test at the end on a multi-GPU host.
"""

import os

import pytest
import torch

from workbench.runtime import InputError
from workbench.runtime import dist as D


def _protocol_rank(ctx, steps):
    """Barrier, object exchange, repeated peer all-gathers (buffer reuse across parities), argmax exchange."""
    ctx.barrier("start")
    names = ctx.all_gather_object(f"r{ctx.rank}")
    ws = D.PeerWorkspace(ctx, 1 << 20, timeout_s=10)
    bar, ag, pick = D.PeerBarrier(ws), D.PeerAllGather(ws, 4096), D.PeerArgmaxPick(ws, 16)
    gathered = []
    for s in range(steps):
        x = (torch.arange(12, dtype=torch.float32).reshape(3, 4) + 1000 * ctx.rank + s).to(ctx.device)  # never 0
        gathered.append(ag(x).cpu())
        bar()
    rows = 3
    g = torch.Generator().manual_seed(ctx.rank)
    vals = torch.randint(0, 4, (ctx.world_size * rows,), generator=g).float()  # small ints: many ties
    idx = torch.randint(0, 50, (ctx.world_size * rows,), generator=g)
    ids = pick(vals.to(ctx.device), idx.to(ctx.device), 100 * ctx.rank).cpu()
    errors = []
    for bad in (torch.ones(2000, device=ctx.device), torch.ones(5, device=ctx.device)):
        try:
            ag(bad)
        except InputError as e:
            errors.append(str(e))
    # Subgroups of 2 with their own workspace (the TP-group case).
    sub = None
    if ctx.world_size == 4:
        _, ranks = ctx.subgroup(2)
        ws2 = D.PeerWorkspace(ctx, 1 << 16, ranks=ranks, tag="pairs", timeout_s=10)
        sub = D.PeerAllGather(ws2, 256)(torch.full((4,), float(ctx.rank), device=ctx.device)).cpu()
        ws2.close()
    ws.close()
    return {"names": names, "gathered": gathered, "vals": vals, "idx": idx, "ids": ids, "errors": errors, "sub": sub}


def _skip_rank(ctx, which):
    """Rank 1 never arrives; rank 0 must raise naming it (store barrier first, then the peer barrier)."""
    ws = D.PeerWorkspace(ctx, 1 << 16, timeout_s=1.0)
    if ctx.rank == 1:
        return "skipped"
    if which == "store":
        ctx.barrier("never", timeout_s=1.0)
    else:
        D.PeerBarrier(ws)()
    return "passed"


def _raise_on_rank_1(ctx):
    # Both ranks meet first: a rank 0 that returned (and tore down its group) while rank 1 was still inside gloo's
    # init made rank 1 fail there instead, with gloo's "connectFullMesh failed" (seen once in CI).
    ctx.barrier("before the failure")
    if ctx.rank == 1:
        raise ValueError("deliberate failure on rank 1")
    return ctx.rank


def _check_protocol(res, world, steps):
    for r, out in enumerate(res):
        assert out["names"] == [f"r{q}" for q in range(world)]
        for s, got in enumerate(out["gathered"]):
            want = torch.cat([torch.arange(12, dtype=torch.float32).reshape(3, 4) + 1000 * q + s for q in range(world)])
            assert torch.equal(got, want), (r, s)
        assert len(out["errors"]) == 2 and "max_bytes" in out["errors"][0] and "multiple of 16" in out["errors"][1]
    rows = 3
    for r in range(world):  # rank r's rows: best value over ranks, lowest rank (= lowest id) on ties
        vals = torch.stack([res[q]["vals"][r * rows:(r + 1) * rows] for q in range(world)])
        ids = torch.stack([res[q]["idx"][r * rows:(r + 1) * rows] + 100 * q for q in range(world)])
        want = ids.gather(0, vals.argmax(0)[None])[0]
        assert res[r]["ids"].tolist() == want.tolist()


def test_spawn_two_ranks_protocol():
    res = D.spawn(_protocol_rank, 2, 5, backend="gloo", timeout_s=60)
    _check_protocol(res, 2, 5)


def test_spawn_four_ranks_protocol_and_subgroups():
    res = D.spawn(_protocol_rank, 4, 3, backend="gloo", timeout_s=90)
    _check_protocol(res, 4, 3)
    assert [r["sub"].tolist() for r in res] == [[0.0] * 4 + [1.0] * 4] * 2 + [[2.0] * 4 + [3.0] * 4] * 2


@pytest.mark.parametrize("which", ["store", "peer"])
def test_timeout_names_the_missing_peer(which):
    with pytest.raises(D.RankFailedError) as e:
        D.spawn(_skip_rank, 2, which, backend="gloo", timeout_s=60)
    assert list(e.value.failures) == [0]
    msg = e.value.failures[0]
    assert "PeerTimeoutError" in msg and "rank 0" in msg and "for rank 1" in msg


def test_rank_exception_is_reported_with_its_rank():
    with pytest.raises(D.RankFailedError) as e:
        D.spawn(_raise_on_rank_1, 2, backend="gloo", timeout_s=60)
    assert "deliberate failure on rank 1" in e.value.failures[1]


def test_spawn_rejects_functions_a_fresh_process_cannot_import():
    with pytest.raises(InputError, match="module-level function"):
        D.spawn(lambda ctx: 0, 2, backend="gloo")
    with pytest.raises(InputError, match="nprocs"):
        D.spawn(_raise_on_rank_1, 0, backend="gloo")


def test_multicast_stays_off():
    for k, v in D.MULTICAST_OFF_ENV.items():
        assert os.environ[k] == v


def test_error_word_decoding():
    assert D.decode_peer_error((2 << 28) | (5 << 8) | 3) == ("peer all-gather", 5, 3)


@pytest.mark.gpu
def test_peer_kernels_on_gpus():
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    res = D.spawn(_protocol_rank, 2, 5, backend="nccl", timeout_s=120)
    _check_protocol(res, 2, 5)
