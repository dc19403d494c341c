"""MoE routing and all-to-all prepare kernels chained with programmatic dependent launch (technique 6).

Idea: a wide-EP decode step runs a chain of five tiny kernels per MoE layer (DeepSeek-R1 noaux_tc
routing, then the all-to-all prepare: count-and-indices, cumsum, move-indices, memset-expert-ids). Each
runs for a few microseconds, so the launch gap between them (launch latency, block rasterization,
prologue) is a large share of the chain. With programmatic dependent launch (PDL, TensorRT-LLM PR 7977)
each kernel is launched with the programmatic-stream-serialization attribute and starts while its
predecessor is still running; it waits in `griddepcontrol.wait` before touching dependent data.

Bytes/latency model: the chain moves a few KB (T x 256 logits, T x 8 ids and weights, the index lists,
E*M x 8 receive expert ids), far below a microsecond at HBM bandwidth; it is bound by latency. The bound
used here is the sum of the five kernel bodies with zero gaps, measured from the per-block
%globaltimer timeline with PDL off (`bound_kind = "latency"`).

Blog section: "Programmatic Dependent Launch" of Part 3 (its Figures 4/5 show these kernels serialized
and overlapped in Nsight Systems); facts in reference/techniques.md sections 0.1 and 6.

Parts, in the order the notebook tells them:
- `reference_routing`, `reference_prepare`, `reference`: plain torch, CPU-capable, sync-free (so the same
  code is the GPU `torch_ops` baseline); `reference_loops`: a per-token Python version for small checks.
- `RoutingChain`: the five CuPy/NVRTC kernels of kernels/routing.cu with pre-packed launches, PDL off/on.
- `make_inputs`, `compare_outputs`, `stress_validate`, `slow_predecessor_check`, timelines, `benchmark`.
"""

from __future__ import annotations

import ctypes
import math
import time

import numpy as np
import torch

from ..model import R1
from ..runtime import InputError, check_tensor

# launch.py is listed because the PDL launch path (cuLaunchKernelEx, attributes) is part of what is measured.
SOURCES = ("workbench/techniques/pdl_routing.py", "routing", "workbench/runtime/launch.py")

N_EXPERTS = R1.num_experts  # 256
TOPK = R1.top_k  # 8
N_GROUPS = R1.num_groups  # 8
GROUP_SIZE = N_EXPERTS // N_GROUPS  # 32
TOPK_GROUPS = R1.topk_groups  # 4
ROUTED_SCALE = R1.routed_scaling  # 2.5
SENTINEL = N_EXPERTS  # expert id of an unused receive row ("slotCount" in TRT-LLM)
ROUTE_WARPS = 4  # tokens per routing block (kernels/routing.cu)
PREP_THREADS = 256
COUNT_MAX_THREADS = 1024
KERNELS = ("route_noaux_tc", "count_and_indices", "cumsum_counts", "move_indices", "memset_expert_ids")
MAX_TIMELINE_BLOCKS = 1024
CASE_TOKENS = (32, 128, 256, 1024)
CASE_EP = (8, 32)
WEIGHT_RTOL = 1e-6  # ~8 fp32 ulps; see compare_outputs


# ------------------------------------------------------------------------------------------------
# Input checks
# ------------------------------------------------------------------------------------------------
def check_ep_size(ep_size) -> int:
    """EP size E: experts are placed contiguously, 256 / E per rank, so E must divide 256."""
    if isinstance(ep_size, bool) or not isinstance(ep_size, (int, np.integer)):
        raise InputError(f"ep_size: expected an int dividing {N_EXPERTS}, got {type(ep_size).__name__}")
    if not 1 <= ep_size <= N_EXPERTS or N_EXPERTS % ep_size:
        raise InputError(f"ep_size: expected a divisor of {N_EXPERTS} (1, 2, 4, ..., 256), got {ep_size}")
    return int(ep_size)


def _check_route_inputs(logits, bias, device=None):
    check_tensor("logits", logits, dtype=torch.float32, device=device, ndim=2, contiguous=True)
    if logits.shape[1] != N_EXPERTS:
        raise InputError(f"logits: expected shape [T, {N_EXPERTS}], got {list(logits.shape)}")
    check_tensor("bias", bias, dtype=torch.float32, device=device, shape=[N_EXPERTS], contiguous=True)
    if bias.device != logits.device:
        raise InputError(f"bias: expected a tensor on {logits.device} like logits, got {bias.device}")


def _check_prepare_inputs(expert_ids, ep_size, peer_counts, max_tokens_per_rank, device=None):
    check_tensor("expert_ids", expert_ids, dtype=torch.int32, device=device, ndim=2, contiguous=True)
    if expert_ids.shape[1] != TOPK:
        raise InputError(f"expert_ids: expected shape [T, {TOPK}], got {list(expert_ids.shape)}")
    ep = check_ep_size(ep_size)
    check_tensor("peer_counts", peer_counts, dtype=torch.int32, device=device, shape=[ep], contiguous=True)
    if not isinstance(max_tokens_per_rank, (int, np.integer)) or max_tokens_per_rank < 0:
        raise InputError(f"max_tokens_per_rank: expected an int >= 0, got {max_tokens_per_rank!r}")
    if ep * int(max_tokens_per_rank) * TOPK >= 2**31:
        raise InputError(f"max_tokens_per_rank: E * M * 8 must fit int32, got E={ep}, M={max_tokens_per_rank}")
    return ep


# ------------------------------------------------------------------------------------------------
# Reference (plain torch, CPU or GPU, no host synchronization)
# ------------------------------------------------------------------------------------------------
def sigmoid_rn(logits: torch.Tensor) -> torch.Tensor:
    """sigmoid in fp64, rounded once to fp32: the correctly rounded value, reproducible on CPU and GPU."""
    return (1.0 / (1.0 + torch.exp(-logits.double()))).float()


def reference_routing(logits: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek-R1 noaux_tc routing. logits [T,256] fp32, bias [256] fp32 -> ids [T,8] int32, weights [T,8] fp32.

    s = sigmoid(logits); b = s + bias; group score = top-1 + top-2 of b in each of 8 groups of 32; keep the
    top-4 groups; the 8 experts of highest b inside them, in descending b; weight_k = s_k / (sum s + 1e-20)
    * 2.5 with the sum taken in pick order. Ties: the lower index wins (stable sorts).
    """
    _check_route_inputs(logits, bias)
    t = logits.shape[0]
    s = sigmoid_rn(logits)
    b = s + bias
    top2 = torch.sort(b.view(t, N_GROUPS, GROUP_SIZE), dim=-1, descending=True, stable=True).values
    group_score = top2[..., 0] + top2[..., 1]
    kept_groups = torch.sort(group_score, dim=-1, descending=True, stable=True).indices[:, :TOPK_GROUPS]
    keep = torch.zeros(t, N_GROUPS, dtype=torch.bool, device=b.device).scatter_(1, kept_groups, True)
    candidates = b.masked_fill(~keep.repeat_interleave(GROUP_SIZE, dim=1), float("-inf"))
    ids = torch.sort(candidates, dim=-1, descending=True, stable=True).indices[:, :TOPK]
    picked = s.gather(1, ids)
    denom = picked[:, 0]
    for k in range(1, TOPK):  # pick order, as the kernel sums
        denom = denom + picked[:, k]
    weights = picked / (denom + 1e-20)[:, None] * ROUTED_SCALE
    return ids.to(torch.int32), weights


def reference_prepare(expert_ids: torch.Tensor, ep_size: int, peer_counts: torch.Tensor, max_tokens_per_rank: int,
                      recv_expert_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """All-to-all prepare for EP size E with contiguous expert placement (rank of expert e = e // (256 / E)).

    expert_ids [T,8] int32 (ids outside [0, 256) are ignored: that (token, k) goes nowhere);
    peer_counts [E] int32: tokens each peer announces to us, clamped to [0, M]; M = max_tokens_per_rank.
    Returns int32 tensors: send_counts [E]; send_lists / backward_lists [E, T] (row r: rank r's tokens in
    ascending order, then the backward index token*8 + first k on rank r; entries past the count are -1);
    recv_counts [E]; send_offsets / recv_offsets [E+1] (exclusive prefix sums, last = total);
    send_index / backward_index [T * min(E, 8)] (the lists compacted at the offsets; past the total -1);
    recv_index [E*M] (row recv_offsets[r] + j holds r*M + j; past the total -1); recv_expert_ids [E*M, 8]
    (the given tensor, or -1s, with rows >= total received set to the sentinel 256).
    """
    ep = _check_prepare_inputs(expert_ids, ep_size, peer_counts, max_tokens_per_rank)
    dev, t, m = expert_ids.device, expert_ids.shape[0], int(max_tokens_per_rank)
    i32 = torch.int32
    experts_per_rank = N_EXPERTS // ep
    valid = (expert_ids >= 0) & (expert_ids < N_EXPERTS)
    rank_of = torch.where(valid, torch.div(expert_ids, experts_per_rank, rounding_mode="floor"), -1)
    ranks = torch.arange(ep, device=dev, dtype=i32)
    match = rank_of[:, None, :] == ranks[None, :, None]  # [T, E, 8]
    goes = match.any(-1)  # [T, E]
    ks = torch.arange(TOPK, device=dev, dtype=i32)
    first_k = torch.where(match, ks, TOPK).amin(-1).to(i32)  # [T, E]
    send_counts = goes.sum(0).to(i32)
    # Rank r's tokens first, in ascending token order: a stable sort of "does not go" along tokens.
    order = torch.sort((~goes).T.to(torch.int8), dim=1, stable=True).indices.to(i32)  # [E, T]
    in_list = torch.arange(t, device=dev, dtype=i32)[None, :] < send_counts[:, None]
    send_lists = torch.where(in_list, order, -1)
    backward_lists = torch.where(in_list, order * TOPK + first_k.T.gather(1, order.long()), -1)
    recv_counts = peer_counts.clamp(0, m).to(i32)
    zero = torch.zeros(1, dtype=i32, device=dev)
    send_offsets = torch.cat([zero, send_counts.cumsum(0).to(i32)])
    recv_offsets = torch.cat([zero, recv_counts.cumsum(0).to(i32)])
    n_send = t * min(ep, TOPK)
    dest = torch.where(in_list, send_offsets[:-1, None] + torch.arange(t, device=dev, dtype=i32)[None, :], n_send)
    send_index = torch.full((n_send + 1,), -1, dtype=i32, device=dev).scatter_(0, dest.flatten().long(),
                                                                               send_lists.flatten())[:n_send]
    backward_index = torch.full((n_send + 1,), -1, dtype=i32, device=dev).scatter_(
        0, dest.flatten().long(), backward_lists.flatten())[:n_send]
    j = torch.arange(m, device=dev, dtype=i32)[None, :]
    in_recv = j < recv_counts[:, None]
    rdest = torch.where(in_recv, recv_offsets[:-1, None] + j, ep * m)
    rvalue = ranks[:, None] * m + j
    recv_index = torch.full((ep * m + 1,), -1, dtype=i32, device=dev).scatter_(0, rdest.flatten().long(),
                                                                                rvalue.flatten())[:ep * m]
    if recv_expert_ids is None:
        recv_expert_ids = torch.full((ep * m, TOPK), -1, dtype=i32, device=dev)
    else:
        check_tensor("recv_expert_ids", recv_expert_ids, dtype=i32, shape=[ep * m, TOPK])
        recv_expert_ids = recv_expert_ids.clone()
    unused = torch.arange(ep * m, device=dev, dtype=i32)[:, None] >= recv_offsets[ep]
    recv_expert_ids.masked_fill_(unused, SENTINEL)
    return {"send_counts": send_counts, "send_lists": send_lists, "backward_lists": backward_lists,
            "recv_counts": recv_counts, "send_offsets": send_offsets, "recv_offsets": recv_offsets,
            "send_index": send_index, "backward_index": backward_index, "recv_index": recv_index,
            "recv_expert_ids": recv_expert_ids}


def reference(logits, bias, ep_size, peer_counts, max_tokens_per_rank=None, recv_expert_ids=None) -> dict:
    """Routing then prepare: every output of the chain (see reference_routing / reference_prepare).

    max_tokens_per_rank defaults to T (every rank holds the same batch). Works on CPU and CUDA tensors
    without host synchronization, so on a GPU it is also the `torch_ops` baseline chain.
    """
    m = logits.shape[0] if max_tokens_per_rank is None else max_tokens_per_rank
    ids, weights = reference_routing(logits, bias)
    out = reference_prepare(ids, ep_size, peer_counts, m, recv_expert_ids)
    out["expert_ids"], out["weights"] = ids, weights
    return out


def reference_loops(logits, bias, ep_size, peer_counts, max_tokens_per_rank=None) -> dict:
    """Per-token Python version of `reference` (numpy fp32 scalars, same operation order): small T only."""
    f32 = np.float32
    lg, bs = logits.detach().cpu().numpy(), bias.detach().cpu().numpy()
    t, ep = lg.shape[0], check_ep_size(ep_size)
    m = t if max_tokens_per_rank is None else max_tokens_per_rank
    ids = np.zeros((t, TOPK), np.int32)
    wts = np.zeros((t, TOPK), np.float32)
    for i in range(t):
        s = [f32(1.0 / (1.0 + math.exp(-float(x)))) for x in lg[i]]
        b = [f32(s[e] + bs[e]) for e in range(N_EXPERTS)]
        gscore = []
        for g in range(N_GROUPS):
            vals = sorted(b[g * GROUP_SIZE:(g + 1) * GROUP_SIZE], reverse=True)
            gscore.append(f32(vals[0] + vals[1]))
        groups = sorted(range(N_GROUPS), key=lambda g: (-gscore[g], g))[:TOPK_GROUPS]
        cands = [e for e in range(N_EXPERTS) if e // GROUP_SIZE in groups]
        picks = sorted(cands, key=lambda e: (-b[e], e))[:TOPK]
        denom = f32(0.0)
        for e in picks:
            denom = f32(denom + s[e])
        ids[i] = picks
        wts[i] = [f32(f32(s[e] / f32(denom + f32(1e-20))) * f32(ROUTED_SCALE)) for e in picks]
    epr = N_EXPERTS // ep
    pc = peer_counts.detach().cpu().numpy()
    send_lists = [[] for _ in range(ep)]
    backward = [[] for _ in range(ep)]
    for i in range(t):
        for r in range(ep):
            ks = [k for k in range(TOPK) if 0 <= ids[i, k] < N_EXPERTS and ids[i, k] // epr == r]
            if ks:
                send_lists[r].append(i)
                backward[r].append(i * TOPK + ks[0])
    recv_counts = [min(max(int(c), 0), m) for c in pc]
    total_recv = sum(recv_counts)
    recv_index = [r * m + j for r in range(ep) for j in range(recv_counts[r])]
    return {"expert_ids": ids, "weights": wts, "send_counts": [len(x) for x in send_lists],
            "send_index": sum(send_lists, []), "backward_index": sum(backward, []), "recv_counts": recv_counts,
            "recv_index": recv_index, "total_recv": total_recv}


def reference_weights_fp64(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Weights of the given picks computed in fp64 throughout (for the fp32-rounding check)."""
    s = 1.0 / (1.0 + torch.exp(-logits.double()))
    picked = s.gather(1, ids.long())
    return picked / (picked.sum(1, keepdim=True) + 1e-20) * ROUTED_SCALE


def explain_token(logits_row: torch.Tensor, bias: torch.Tensor) -> dict:
    """The routing of one token step by step (for the notebook's worked example).

    logits_row [256] fp32, bias [256] fp32 -> dict with group scores [8], kept groups (4, best first),
    picked expert ids (8, best first), their biased and unbiased scores, and the weights.
    """
    logits = logits_row.reshape(1, N_EXPERTS).float().cpu()
    bias = bias.float().cpu()
    s = sigmoid_rn(logits)[0]
    b = s + bias
    top2 = torch.sort(b.view(N_GROUPS, GROUP_SIZE), dim=-1, descending=True, stable=True).values[:, :2]
    group_score = top2[:, 0] + top2[:, 1]
    kept = torch.sort(group_score, descending=True, stable=True).indices[:TOPK_GROUPS]
    ids, weights = reference_routing(logits, bias)
    ids = ids[0]
    return {"group_score": group_score.tolist(), "group_top2": top2.tolist(), "kept_groups": kept.tolist(),
            "expert_ids": ids.tolist(), "expert_group": (ids // GROUP_SIZE).tolist(),
            "biased_score": b[ids.long()].tolist(), "score": s[ids.long()].tolist(), "weights": weights[0].tolist()}


# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------
def make_inputs(n_tokens: int, ep_size: int, seed: int = 0, device="cuda", ties: bool = False,
                max_tokens_per_rank: int | None = None) -> dict:
    """Fresh random router logits [T,256] fp32, correction bias [256] fp32 and peer counts [E] int32.

    Logits ~ N(0, 1.5^2) with a few outliers per row (router logits of a trained model are spread and
    peaky); bias ~ N(0, 0.05^2) (DeepSeek's correction bias is small next to the scores). ties=True rounds
    logits to steps of 0.25 and the bias to 0 or 2^-4 so that equal scores occur and the tie-break matters.
    Peer counts are uniform in [-2, M + 2] so the clamp to [0, M] is exercised.
    """
    ep = check_ep_size(ep_size)
    m = n_tokens if max_tokens_per_rank is None else max_tokens_per_rank
    g = torch.Generator(device="cpu").manual_seed(seed)
    logits = torch.randn(n_tokens, N_EXPERTS, generator=g) * 1.5
    if n_tokens:
        rows = torch.arange(n_tokens)
        hot = torch.randint(0, N_EXPERTS, (n_tokens, 2), generator=g)
        logits[rows[:, None], hot] += 4.0
    bias = torch.randn(N_EXPERTS, generator=g) * 0.05
    if ties:
        logits = torch.round(logits * 4) / 4
        bias = (torch.rand(N_EXPERTS, generator=g) < 0.5).float() * 2.0**-4
    peer_counts = torch.randint(-2, m + 3, (ep,), generator=g, dtype=torch.int32)
    return {"logits": logits.float().to(device), "bias": bias.float().to(device),
            "peer_counts": peer_counts.to(device), "ep_size": ep, "max_tokens_per_rank": m}


# ------------------------------------------------------------------------------------------------
# GPU kernels: pre-packed launches through cuLaunchKernelEx, PDL off or on
# ------------------------------------------------------------------------------------------------
class PreparedLaunch:
    """One kernel launch with its arguments packed once (a ctypes void*[] whose address is passed).

    The host cost per call is one cuda-bindings cuLaunchKernelEx call with a cached CUlaunchConfig
    (per stream, PDL off and on), which keeps five back-to-back launches ahead of the GPU.
    """

    def __init__(self, func, grid, block, args, shared_mem: int = 0):
        from cuda.bindings import driver as cu

        from ..runtime.launch import _CTYPES, _dim3, _Ptr, pack_arg

        self.func, self.grid, self.block, self.shared_mem = func, _dim3(grid), _dim3(block), shared_mem
        self._cufunc = cu.CUfunction(func.ptr)
        self._objs = []
        for i, a in enumerate(args):
            p = pack_arg(a, i)
            self._objs.append(ctypes.c_void_p(p.value) if isinstance(p, _Ptr) else _CTYPES[p.dtype](p.item()))
        self._array = (ctypes.c_void_p * max(1, len(self._objs)))(*[ctypes.addressof(o) for o in self._objs])
        self._params = ctypes.addressof(self._array)
        self._configs: dict[tuple[int, bool], object] = {}
        self._launch = cu.cuLaunchKernelEx
        self._ok = cu.CUresult.CUDA_SUCCESS

    def _config(self, stream_ptr: int, pdl: bool):
        from cuda.bindings import driver as cu

        cfg = cu.CUlaunchConfig()
        cfg.gridDimX, cfg.gridDimY, cfg.gridDimZ = self.grid
        cfg.blockDimX, cfg.blockDimY, cfg.blockDimZ = self.block
        cfg.sharedMemBytes = self.shared_mem
        cfg.hStream = cu.CUstream(stream_ptr)
        if pdl:
            attr = cu.CUlaunchAttribute()
            attr.id = cu.CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
            attr.value.programmaticStreamSerializationAllowed = 1
            cfg.attrs = [attr]
            cfg.numAttrs = 1
        else:
            cfg.numAttrs = 0
        self._configs[(stream_ptr, pdl)] = cfg
        return cfg

    def __call__(self, stream_ptr: int, pdl: bool):
        cfg = self._configs.get((stream_ptr, pdl)) or self._config(stream_ptr, pdl)
        (err,) = self._launch(cfg, self._cufunc, self._params, 0)
        if err != self._ok:
            raise RuntimeError(f"cuLaunchKernelEx({self.func}) failed: {err.name}")


def _empty(n: int, dtype, device, fill=None) -> torch.Tensor:
    """A tensor of n elements whose storage has at least one element (a nonzero pointer even when n = 0)."""
    buf = torch.empty(max(n, 1), dtype=dtype, device=device) if fill is None else \
        torch.full((max(n, 1),), fill, dtype=dtype, device=device)
    return buf[:n]


class RoutingChain:
    """The five kernels of kernels/routing.cu with fixed buffers, for one shape (T, E, M).

    Inputs are copied into fixed buffers (`set_inputs`) so the chain can be replayed in a CUDA graph:
    logits [T,256] fp32, bias [256] fp32, peer_counts [E] int32; with route=False the chain starts at
    count_and_indices from expert_ids [T,8] int32 instead. Outputs (`outputs()`): the keys of `reference`.
    `launch(pdl)` launches the chain on torch's current stream; the first kernel is always an ordinary
    launch (its predecessor lies outside the chain), the other four carry the PDL attribute when pdl=True.
    """

    def __init__(self, n_tokens: int, ep_size: int, max_tokens_per_rank: int | None = None, *, route: bool = True,
                 timeline: bool = False, defines: tuple[str, ...] = (), device="cuda"):
        from ..runtime import get_kernel

        ep = check_ep_size(ep_size)
        if not isinstance(n_tokens, (int, np.integer)) or n_tokens < 0:
            raise InputError(f"n_tokens: expected an int >= 0, got {n_tokens!r}")
        t = int(n_tokens)
        m = t if max_tokens_per_rank is None else int(max_tokens_per_rank)
        if m < 0 or ep * m * TOPK >= 2**31 or ep * max(t, 1) >= 2**31:
            raise InputError(f"max_tokens_per_rank: expected 0 <= M with E*M*8 < 2^31, got M={m}, E={ep}")
        self.n_tokens, self.ep_size, self.max_tokens_per_rank, self.route = t, ep, m, route
        f32, i32 = torch.float32, torch.int32
        self.logits = _empty(t * N_EXPERTS, f32, device).view(t, N_EXPERTS)
        self.bias = _empty(N_EXPERTS, f32, device)
        self.peer_counts = _empty(ep, i32, device)
        self.expert_ids = _empty(t * TOPK, i32, device).view(t, TOPK)
        self.weights = _empty(t * TOPK, f32, device).view(t, TOPK)
        self.send_counts, self.recv_counts = _empty(ep, i32, device), _empty(ep, i32, device)
        self.send_lists = _empty(ep * t, i32, device).view(ep, t)
        self.backward_lists = _empty(ep * t, i32, device).view(ep, t)
        self.send_offsets, self.recv_offsets = _empty(ep + 1, i32, device), _empty(ep + 1, i32, device)
        n_send = t * min(ep, TOPK)
        self.send_index, self.backward_index = _empty(n_send, i32, device), _empty(n_send, i32, device)
        self.recv_index = _empty(ep * m, i32, device)
        self.recv_expert_ids = _empty(ep * m * TOPK, i32, device).view(ep * m, TOPK)
        self.timeline_buf = torch.zeros(len(KERNELS), MAX_TIMELINE_BLOCKS, 3, dtype=torch.int64, device=device)

        def tl(k):
            return self.timeline_buf[k] if timeline else np.uint64(0)

        sms = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
        rows = ep * m
        # count_and_indices: one warp-multiple tile covering T (<= 1024 threads; larger T loops over tiles).
        count_threads = min(COUNT_MAX_THREADS, max(32, -(-t // 32) * 32))
        specs = [
            ("route_noaux_tc", max(1, -(-t // ROUTE_WARPS)), 32 * ROUTE_WARPS,
             (self.logits, self.bias, self.expert_ids, self.weights, t, tl(0))),
            ("count_and_indices", ep + 1, count_threads,
             (self.expert_ids, t, ep, self.peer_counts, m, self.send_counts, self.send_lists, self.backward_lists,
              self.recv_counts, tl(1))),
            ("cumsum_counts", 1, 64,
             (self.send_counts, self.recv_counts, ep, self.send_offsets, self.recv_offsets, tl(2))),
            ("move_indices", (ep, 2), PREP_THREADS,
             (self.send_counts, self.send_offsets, self.send_lists, self.backward_lists, self.recv_counts,
              self.recv_offsets, t, m, self.send_index, self.backward_index, self.recv_index, tl(3))),
            ("memset_expert_ids", max(1, min(-(-2 * rows // PREP_THREADS), 2 * sms)), PREP_THREADS,
             (self.recv_offsets, ep, rows, SENTINEL, self.recv_expert_ids, tl(4))),
        ]
        self.grids = {name: grid for name, grid, _, _ in specs}
        for name, grid, _, _ in specs:
            nblocks = grid if isinstance(grid, int) else grid[0] * grid[1]
            if nblocks > MAX_TIMELINE_BLOCKS:
                raise InputError(f"{name}: {nblocks} blocks exceed the timeline buffer ({MAX_TIMELINE_BLOCKS})")
        self.kernel_names = [s[0] for s in specs] if route else [s[0] for s in specs[1:]]
        self.launches = [PreparedLaunch(get_kernel("routing", name, defines), grid, block, args)
                         for name, grid, block, args in (specs if route else specs[1:])]

    def set_inputs(self, logits=None, bias=None, peer_counts=None, expert_ids=None, recv_expert_ids=None):
        """Copy inputs into the chain's buffers (checked: dtype, shape, device)."""
        t, ep, m = self.n_tokens, self.ep_size, self.max_tokens_per_rank
        if logits is not None:
            check_tensor("logits", logits, dtype=torch.float32, device="cuda", shape=[t, N_EXPERTS])
            self.logits.copy_(logits)
        if bias is not None:
            check_tensor("bias", bias, dtype=torch.float32, device="cuda", shape=[N_EXPERTS])
            self.bias.copy_(bias)
        if peer_counts is not None:
            check_tensor("peer_counts", peer_counts, dtype=torch.int32, device="cuda", shape=[ep])
            self.peer_counts.copy_(peer_counts)
        if expert_ids is not None:
            check_tensor("expert_ids", expert_ids, dtype=torch.int32, device="cuda", shape=[t, TOPK])
            self.expert_ids.copy_(expert_ids)
        if recv_expert_ids is not None:
            check_tensor("recv_expert_ids", recv_expert_ids, dtype=torch.int32, device="cuda", shape=[ep * m, TOPK])
            self.recv_expert_ids.copy_(recv_expert_ids)

    def poison(self, value: int = -7):
        """Fill every output with a value no kernel writes, so an unwritten element shows."""
        for name in ("send_counts", "recv_counts", "send_lists", "backward_lists", "send_offsets", "recv_offsets",
                     "send_index", "backward_index", "recv_index"):
            getattr(self, name).fill_(value)
        if self.route:
            self.expert_ids.fill_(value)
            self.weights.fill_(float("nan"))

    def launch(self, pdl: bool, first_pdl: bool = False, stream_ptr: int | None = None):
        """Launch the chain on `stream_ptr` (default torch's current stream)."""
        sp = torch.cuda.current_stream().cuda_stream if stream_ptr is None else stream_ptr
        first = True
        for launch in self.launches:
            launch(sp, (first_pdl if first else pdl))
            first = False

    def outputs(self) -> dict[str, torch.Tensor]:
        names = ("send_counts", "send_lists", "backward_lists", "recv_counts", "send_offsets", "recv_offsets",
                 "send_index", "backward_index", "recv_index", "recv_expert_ids", "expert_ids", "weights")
        return {n: getattr(self, n) for n in names}

    def read_timeline(self) -> list[dict]:
        """Per kernel: block entry / wait-returned / exit times in ns (absolute %globaltimer)."""
        tl = self.timeline_buf.cpu().numpy()
        out = []
        offset = 0 if self.route else 1
        for i, (name, launch) in enumerate(zip(self.kernel_names, self.launches)):
            g = launch.grid
            n = g[0] * g[1] * g[2]
            rows = tl[i + offset, :n]
            out.append({"kernel": name, "blocks": n, "entry": rows[:, 0].tolist(), "waited": rows[:, 1].tolist(),
                        "exit": rows[:, 2].tolist()})
        return out


def route_and_prepare(logits, bias, ep_size, peer_counts, max_tokens_per_rank=None, *, pdl: bool = True,
                      recv_expert_ids=None) -> dict[str, torch.Tensor]:
    """Run the kernel chain once on fresh buffers (convenience; `RoutingChain` for repeated use).

    logits [T,256] fp32 CUDA, bias [256] fp32, peer_counts [E] int32; returns the keys of `reference`
    (entries past the totals of send_index/backward_index/recv_index and of the lists are unspecified).
    """
    _check_route_inputs(logits, bias, device="cuda")
    m = logits.shape[0] if max_tokens_per_rank is None else max_tokens_per_rank
    _check_prepare_inputs(torch.empty(0, TOPK, dtype=torch.int32, device="cuda"), ep_size, peer_counts, m,
                          device="cuda")
    chain = RoutingChain(logits.shape[0], ep_size, m)
    chain.set_inputs(logits=logits, bias=bias, peer_counts=peer_counts, recv_expert_ids=recv_expert_ids)
    chain.launch(pdl=pdl)
    return {k: v.clone() for k, v in chain.outputs().items()}


def prepare(expert_ids, ep_size, peer_counts, max_tokens_per_rank, *, pdl: bool = True,
            recv_expert_ids=None) -> dict[str, torch.Tensor]:
    """Only the four prepare kernels, from given expert ids [T,8] int32 (out-of-range ids are ignored)."""
    _check_prepare_inputs(expert_ids, ep_size, peer_counts, max_tokens_per_rank, device="cuda")
    chain = RoutingChain(expert_ids.shape[0], ep_size, max_tokens_per_rank, route=False)
    chain.set_inputs(expert_ids=expert_ids, peer_counts=peer_counts, recv_expert_ids=recv_expert_ids)
    chain.launch(pdl=pdl)
    out = {k: v.clone() for k, v in chain.outputs().items()}
    out.pop("weights")
    return out


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------
_EXACT_FIELDS = ("expert_ids", "send_counts", "recv_counts", "send_offsets", "recv_offsets", "recv_expert_ids")


def _valid_part(name: str, out: dict, t: torch.Tensor) -> torch.Tensor:
    """The meaningful prefix of an index array (its tail past the total is unspecified)."""
    if name in ("send_index", "backward_index"):
        return t[: int(out["send_offsets"][-1])]
    if name == "recv_index":
        return t[: int(out["recv_offsets"][-1])]
    if name in ("send_lists", "backward_lists"):
        keep = torch.arange(t.shape[1], device=t.device)[None, :] < out["send_counts"][:, None].to(t.device)
        return torch.where(keep, t, -1)
    return t


def compare_outputs(out: dict, ref: dict, fields=None) -> dict:
    """Exact equality of ids, counts, offsets and index arrays; weights within fp32 rounding.

    Weights: the kernel and the reference do the same fp32 operations in the same order (sigmoid rounded
    once from fp64, sum in pick order, divide, scale), so they agree to the bit unless an fp64 exp differs
    in its last place; the tolerance |w - w_ref| <= 1e-6 * |w_ref| (~8 fp32 ulps) allows for that.
    Returns {field: mismatches, "weights_max_rel": float, "passed": bool}.
    """
    res: dict = {}
    passed = True
    names = fields or [k for k in ref if k in out]
    for name in names:
        if name == "weights":
            w, wr = out["weights"].float().cpu(), ref["weights"].float().cpu()
            rel = float(((w - wr).abs() / wr.abs().clamp_min(1e-30)).max()) if w.numel() else 0.0
            if not math.isfinite(rel):
                rel = float("inf")
            res["weights_max_rel"] = rel
            passed &= rel <= WEIGHT_RTOL
            continue
        a = _valid_part(name, {k: v.cpu() for k, v in out.items() if k in ("send_offsets", "recv_offsets",
                                                                            "send_counts")}, out[name].cpu())
        b = _valid_part(name, {k: v.cpu() for k, v in ref.items() if k in ("send_offsets", "recv_offsets",
                                                                            "send_counts")}, ref[name].cpu())
        n_bad = int((a != b).sum()) if a.shape == b.shape else max(a.numel(), b.numel())
        res[name] = n_bad
        passed &= n_bad == 0
    res["passed"] = bool(passed)
    return res


def bitwise_equal(a: dict, b: dict) -> bool:
    """Every output of two runs identical bit for bit (meaningful prefixes of the index arrays)."""
    for name in a:
        x = _valid_part(name, a, a[name]).cpu()
        y = _valid_part(name, b, b[name]).cpu()
        if x.shape != y.shape or not torch.equal(x.view(torch.int32) if x.dtype == torch.float32 else x,
                                                  y.view(torch.int32) if y.dtype == torch.float32 else y):
            return False
    return True


def _snapshot(chain: RoutingChain) -> dict:
    return {k: v.clone() for k, v in chain.outputs().items()}


def stress_validate(n_iter: int = 1000, seed: int = 1234, progress: bool = False) -> dict:
    """Fresh random inputs per iteration (T, E, ties drawn at random); PDL off, PDL on and a CUDA-graph
    replay with PDL on each compared to the CPU reference, and to each other bit for bit."""
    rng = np.random.default_rng(seed)
    t_choices = (0, 1, 7, 32, 100, 128, 256, 1000, 1024)
    e_choices = (1, 2, 4, 8, 16, 32, 64, 256)
    chains: dict = {}
    graphs: dict = {}
    summary = {"iterations": 0, "failed": 0, "not_bitwise": 0, "weights_max_rel": 0.0, "tokens": 0, "ties_iters": 0,
               "first_failure": None, "gpu_vs_cpu_reference_differs": 0}
    for it in range(n_iter):
        t, ep = int(rng.choice(t_choices)), int(rng.choice(e_choices))
        ties = bool(rng.random() < 0.25)
        inp = make_inputs(t, ep, seed=seed * 100003 + it, device="cuda", ties=ties)
        key = (t, ep)
        if key not in chains:
            chains[key] = RoutingChain(t, ep)
            graphs[key] = capture_graph(lambda c=chains[key]: c.launch(pdl=True))
        chain = chains[key]
        chain.set_inputs(logits=inp["logits"], bias=inp["bias"], peer_counts=inp["peer_counts"])
        poison_recv = torch.full((ep * t, TOPK), -3, dtype=torch.int32, device="cuda")
        # The torch reference on the GPU (same code as on CPU, fast); every 10th iteration also on the CPU.
        ref = reference(inp["logits"], inp["bias"], ep, inp["peer_counts"], t, recv_expert_ids=poison_recv)
        if it % 10 == 0:
            ref_cpu = reference(inp["logits"].cpu(), inp["bias"].cpu(), ep, inp["peer_counts"].cpu(), t,
                                recv_expert_ids=poison_recv.cpu())
            if not compare_outputs(ref, ref_cpu)["passed"]:
                summary["gpu_vs_cpu_reference_differs"] = summary.get("gpu_vs_cpu_reference_differs", 0) + 1
        runs = {}
        for mode in ("pdl_off", "pdl_on", "graph_pdl_on"):
            chain.poison()
            chain.set_inputs(recv_expert_ids=poison_recv)
            if mode == "graph_pdl_on":
                graphs[key].replay()
            else:
                chain.launch(pdl=mode == "pdl_on")
            torch.cuda.synchronize()
            runs[mode] = _snapshot(chain)
            cmp = compare_outputs(runs[mode], ref)
            summary["weights_max_rel"] = max(summary["weights_max_rel"], cmp.get("weights_max_rel", 0.0))
            if not cmp["passed"]:
                summary["failed"] += 1
                if summary["first_failure"] is None:
                    summary["first_failure"] = {"iter": it, "T": t, "E": ep, "ties": ties, "mode": mode, **cmp}
        if not (bitwise_equal(runs["pdl_off"], runs["pdl_on"]) and bitwise_equal(runs["pdl_off"],
                                                                                    runs["graph_pdl_on"])):
            summary["not_bitwise"] += 1
        summary["iterations"] += 1
        summary["tokens"] += t
        summary["ties_iters"] += ties
        if progress and (it + 1) % 200 == 0:
            print(f"  stress {it + 1}/{n_iter}: failed {summary['failed']}, not bitwise {summary['not_bitwise']}")
    summary["passed"] = summary["failed"] == 0 and summary["not_bitwise"] == 0
    return summary


def prepare_out_of_range_check(seed: int = 7) -> dict:
    """Expert ids outside [0, 256) (negative, 256, large) are ignored by the kernels as by the reference."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    t, ep = 64, 8
    ids = torch.randint(0, N_EXPERTS, (t, TOPK), generator=g, dtype=torch.int32)
    bad = torch.rand(t, TOPK, generator=g) < 0.3
    ids[bad] = torch.tensor([-1, -300, 256, 1000, 2**30], dtype=torch.int32)[torch.randint(0, 5, (int(bad.sum()),),
                                                                                          generator=g)]
    ids[0] = -1  # a token with no valid expert at all goes nowhere
    peer = torch.randint(0, t + 1, (ep,), generator=g, dtype=torch.int32)
    ref = reference_prepare(ids, ep, peer, t)
    out = prepare(ids.cuda(), ep, peer.cuda(), t, pdl=True,
                  recv_expert_ids=torch.full((ep * t, TOPK), -1, dtype=torch.int32, device="cuda"))
    torch.cuda.synchronize()
    return compare_outputs(out, ref)


def slow_predecessor_check(spin_us: float = 100.0, n_tokens: int = 128, ep_size: int = 8, skip_wait: bool = False,
                           seed: int = 5) -> dict:
    """A producer that triggers its dependents at once, spins `spin_us`, then writes the logits; the chain is
    launched right after it with PDL on every kernel, the routing kernel included.

    Passes when the outputs equal the reference of the NEW logits and the timeline shows that the routing
    kernel started before the producer ended (so the wait, not the launch order, kept it correct).
    skip_wait=True builds the routing kernel without its pdl_wait (negative control: must fail).
    """
    from ..runtime import get_kernel

    inp = make_inputs(n_tokens, ep_size, seed=seed)
    stale = make_inputs(n_tokens, ep_size, seed=seed + 1)["logits"]
    defines = ("WB_TEST_SKIP_WAIT=1",) if skip_wait else ()
    chain = RoutingChain(n_tokens, ep_size, timeline=True, defines=defines)
    chain.set_inputs(logits=stale, bias=inp["bias"], peer_counts=inp["peer_counts"])
    chain.poison()
    tl_prod = torch.zeros(MAX_TIMELINE_BLOCKS, 3, dtype=torch.int64, device="cuda")
    n = n_tokens * N_EXPERTS
    producer = PreparedLaunch(get_kernel("routing", "slow_producer"), 8, 256,
                              (inp["logits"], chain.logits, np.int64(n), np.int64(int(spin_us * 1e3)), tl_prod))
    torch.cuda.synchronize()
    sp = torch.cuda.current_stream().cuda_stream
    producer(sp, False)
    chain.launch(pdl=True, first_pdl=True, stream_ptr=sp)
    torch.cuda.synchronize()
    ref = reference(inp["logits"].cpu(), inp["bias"].cpu(), ep_size, inp["peer_counts"].cpu(), n_tokens)
    cmp = compare_outputs(_snapshot(chain), ref, fields=["expert_ids", "weights", "send_counts", "send_index"])
    tl = chain.read_timeline()
    prod = tl_prod[:8].cpu().numpy()
    producer_end = int(prod[:, 2].max())
    route_entry = min(tl[0]["entry"])
    route_waited = min(tl[0]["waited"])
    return {"correct": cmp["passed"], "compare": cmp, "skip_wait": skip_wait, "spin_us": spin_us,
            "route_started_before_producer_end_us": (producer_end - route_entry) / 1e3,
            "route_wait_returned_after_producer_end_us": (route_waited - producer_end) / 1e3,
            "overlapped": route_entry < producer_end,
            "passed": (cmp["passed"] and route_entry < producer_end and route_waited >= producer_end)
            if not skip_wait else (not cmp["passed"])}


# ------------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------------
def _sleep_cycles(us: float) -> int:
    try:
        import cupy

        khz = cupy.cuda.runtime.getDeviceProperties(torch.cuda.current_device())["clockRate"]
    except Exception:
        khz = 1_980_000
    return int(us * khz / 1e3)


def _fed_samples(fn, reps: int, feed_us: float, fed: bool) -> list[float]:
    cycles = _sleep_cycles(feed_us)
    stream = torch.cuda.current_stream()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for i in range(reps):
        if fed:
            torch.cuda._sleep(cycles)
        else:
            torch.cuda.synchronize()
        starts[i].record(stream)
        fn()
        ends[i].record(stream)
    torch.cuda.synchronize()
    return [s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends)]


def time_fed(fn, reps: int = 200, feed_us: float = 60.0, warmup: int = 10, fed: bool = True):
    """Latency of one call of `fn` between two CUDA events, with the GPU kept fed.

    fed=True queues a sleep kernel of `feed_us` first, so the host has enqueued the whole call before the
    GPU reaches it: the time is the GPU-side latency of the chain, free of host launch gaps (what a busy
    decode step sees when the CPU runs ahead). fed=False synchronizes before each sample instead: the
    latency a lone call sees from an idle GPU, including host launch cost.
    """
    return time_fed_variants({"fn": fn}, reps=reps, feed_us=feed_us, warmup=warmup, fed=fed, rounds=1)["fn"]


def time_fed_variants(fns: dict, reps: int = 200, feed_us: float = 60.0, warmup: int = 10, fed: bool = True,
                      rounds: int = 4) -> dict:
    """`time_fed` for several variants in interleaved rounds (samples merged), so a drift of clocks or
    of the machine during the run hits every variant alike. Returns {name: Timing}."""
    from ..bench import summarize

    for fn in fns.values():
        for _ in range(warmup):
            fn()
    torch.cuda.synchronize()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    per_round = max(1, reps // rounds)
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name] += _fed_samples(fn, per_round, feed_us, fed)
    method = {"timer": "cuda_event", "fed": fed, "feed_us": feed_us if fed else 0, "rounds": rounds,
              "what": "one event pair around one chain"}
    return {k: summarize(v, method) for k, v in samples.items()}


def capture_graph(fn) -> torch.cuda.CUDAGraph:
    """Capture fn() into a CUDA graph on a side stream (PDL launches become programmatic edges)."""
    g = torch.cuda.CUDAGraph()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
        torch.cuda.synchronize()
        with torch.cuda.graph(g, stream=side):
            fn()
    torch.cuda.synchronize()
    return g


def timeline_spans(tl: list[dict]) -> dict:
    """Kernel spans and boundary gaps from a timeline (ns in, us out).

    body_us[k] = last exit - first wait-return of kernel k (the work after the dependency resolved);
    gap_us[k] = first entry of kernel k+1 - last exit of kernel k (negative: the next kernel was already
    resident, i.e. overlap); total_us = last exit of the chain - first entry of the chain.
    """
    t0 = min(tl[0]["entry"])
    body, gaps = [], []
    for i, k in enumerate(tl):
        body.append((max(k["exit"]) - min(k["waited"])) / 1e3)
        if i + 1 < len(tl):
            gaps.append((min(tl[i + 1]["entry"]) - max(k["exit"])) / 1e3)
    return {"body_us": body, "gap_us": gaps, "sum_body_us": sum(body), "total_us": (max(tl[-1]["exit"]) - t0) / 1e3}


def record_timeline(chain: RoutingChain, pdl: bool, graph=None, feed_us: float = 60.0, reps: int = 9) -> list[dict]:
    """Run the timeline-enabled chain `reps` times (fed) and keep the run of median total latency."""
    runs = []
    cycles = _sleep_cycles(feed_us)
    for _ in range(reps):
        chain.timeline_buf.zero_()
        torch.cuda.synchronize()
        torch.cuda._sleep(cycles)
        if graph is not None:
            graph.replay()
        else:
            chain.launch(pdl=pdl)
        torch.cuda.synchronize()
        tl = chain.read_timeline()
        runs.append((timeline_spans(tl)["total_us"], tl))
    runs.sort(key=lambda r: r[0])
    return runs[len(runs) // 2][1]


def timeline_for_plot(tl: list[dict]) -> list[dict]:
    """Timeline relative to the chain's first block entry, in us, per kernel (what the figure draws)."""
    t0 = min(tl[0]["entry"])
    return [{"kernel": k["kernel"], "blocks": k["blocks"],
             "entry_us": [(x - t0) / 1e3 for x in k["entry"]], "waited_us": [(x - t0) / 1e3 for x in k["waited"]],
             "exit_us": [(x - t0) / 1e3 for x in k["exit"]]} for k in tl]


def live_timelines(n_tokens: int, ep_size: int, seed: int = 0) -> tuple[dict, dict]:
    """Record the chain's timeline now (GPU): PDL off, PDL on, and a CUDA graph with PDL on.

    Returns ({mode: timeline_for_plot(...)}, {mode: timeline_spans(...)}).
    """
    inp = make_inputs(n_tokens, ep_size, seed=seed)
    chain = RoutingChain(n_tokens, ep_size, timeline=True)
    chain.set_inputs(logits=inp["logits"], bias=inp["bias"], peer_counts=inp["peer_counts"])
    graph = capture_graph(lambda: chain.launch(pdl=True))
    tls = {"pdl_off": record_timeline(chain, pdl=False), "pdl_on": record_timeline(chain, pdl=True),
           "graph_pdl_on": record_timeline(chain, pdl=True, graph=graph)}
    return {k: timeline_for_plot(v) for k, v in tls.items()}, {k: timeline_spans(v) for k, v in tls.items()}


def host_launch_costs(n: int = 2000) -> dict:
    """Host (CPU) time per launch of a tiny kernel, us: CuPy launch, runtime.launch with PDL
    (cuLaunchKernelEx with per-call packing), and a PreparedLaunch (packed once)."""
    from ..runtime import get_kernel, launch

    chain = RoutingChain(32, 8)
    fn = get_kernel("routing", "cumsum_counts")
    args = (chain.send_counts, chain.recv_counts, 8, chain.send_offsets, chain.recv_offsets, np.uint64(0))
    chain.send_counts.fill_(1)
    chain.recv_counts.fill_(1)
    prepared = PreparedLaunch(fn, 1, 64, args)
    sp = torch.cuda.current_stream().cuda_stream
    out = {}
    cases = {
        "cupy_launch": lambda: launch(fn, 1, 64, args, enable_pdl=False),
        "runtime_launch_pdl": lambda: launch(fn, 1, 64, args, enable_pdl=True),
        "prepared_launch_pdl": lambda: prepared(sp, True),
        "prepared_launch_no_pdl": lambda: prepared(sp, False),
    }
    for name, f in cases.items():
        for _ in range(50):
            f()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        out[name] = (time.perf_counter() - t0) / n * 1e6
        torch.cuda.synchronize()
    return out


# ------------------------------------------------------------------------------------------------
# Benchmark
# ------------------------------------------------------------------------------------------------
def benchmark(smoke: bool = False, progress: bool = True, extras: dict | None = None):
    """Cases T{T}_E{E}: torch_ops (the reference chain in eager torch), pdl_off (baseline), pdl_on
    (optimized), graph_pdl_off, graph_pdl_on, and torch_ops_graph; each validated on fresh inputs first.

    Every time is one event pair around one chain with the GPU fed (see `time_fed`); the bound is the sum
    of the five kernel bodies from the PDL-off timeline. `extras` (a dict) receives the unfed eager times,
    the timelines and the per-boundary gaps.
    """
    tokens = (32, 256) if smoke else CASE_TOKENS
    eps = (8,) if smoke else CASE_EP
    reps = 30 if smoke else 200
    return [_benchmark_case(t, ep, reps, smoke, progress, extras) for ep in eps for t in tokens]


def _benchmark_case(t: int, ep: int, reps: int, smoke: bool, progress: bool, extras: dict | None):
    """One case T{t}_E{ep}: validate every variant, then time it (see `benchmark`)."""
    from ..bench import Case

    inp = make_inputs(t, ep, seed=1000 * t + ep)
    poison_recv = torch.full((ep * t, TOPK), -3, dtype=torch.int32, device="cuda")
    ref = reference(inp["logits"].cpu(), inp["bias"].cpu(), ep, inp["peer_counts"].cpu(), t,
                    recv_expert_ids=poison_recv.cpu())
    chain = RoutingChain(t, ep)
    chain.set_inputs(logits=inp["logits"], bias=inp["bias"], peer_counts=inp["peer_counts"])
    graphs = {"graph_pdl_off": capture_graph(lambda: chain.launch(pdl=False)),
              "graph_pdl_on": capture_graph(lambda: chain.launch(pdl=True))}
    recv_state = poison_recv.clone()

    def torch_ops():
        return reference(inp["logits"], inp["bias"], ep, inp["peer_counts"], t, recv_expert_ids=recv_state)

    validation: dict = {"passed": True}
    runs = {}
    for name in ("pdl_off", "pdl_on", "graph_pdl_off", "graph_pdl_on"):
        chain.poison()
        chain.set_inputs(recv_expert_ids=poison_recv)
        if name.startswith("graph"):
            graphs[name].replay()
        else:
            chain.launch(pdl=name == "pdl_on")
        torch.cuda.synchronize()
        runs[name] = _snapshot(chain)
        cmp = compare_outputs(runs[name], ref)
        validation[f"{name}.passed"] = cmp["passed"]
        validation[f"{name}.weights_max_rel"] = cmp["weights_max_rel"]
        validation["passed"] &= cmp["passed"]
    cmp = compare_outputs(torch_ops(), ref)
    validation["torch_ops.passed"] = cmp["passed"]
    validation["passed"] &= cmp["passed"]
    bitwise = all(bitwise_equal(runs["pdl_off"], runs[n]) for n in runs)
    validation["pdl_on_off_bitwise_equal"] = bitwise
    validation["passed"] &= bitwise

    torch_graph = None
    try:
        torch_graph = capture_graph(torch_ops)
    except Exception as e:  # report, do not hide: the record says the variant is missing and why
        validation["torch_ops_graph.error"] = f"{type(e).__name__}: {e}"[:200]
    fns = {"torch_ops": torch_ops, "pdl_off": lambda: chain.launch(pdl=False),
           "pdl_on": lambda: chain.launch(pdl=True), "graph_pdl_off": graphs["graph_pdl_off"].replay,
           "graph_pdl_on": graphs["graph_pdl_on"].replay}
    if torch_graph is not None:
        fns["torch_ops_graph"] = torch_graph.replay
    timings = time_fed_variants(fns, reps=reps)
    unfed = time_fed_variants({k: fns[k] for k in ("pdl_off", "pdl_on", "torch_ops")}, reps=reps // 2, fed=False)

    # Timelines with the timeline-enabled build of the same kernels (same launches, plus stamps).
    tchain = RoutingChain(t, ep, timeline=True)
    tchain.set_inputs(logits=inp["logits"], bias=inp["bias"], peer_counts=inp["peer_counts"])
    tgraph = capture_graph(lambda: tchain.launch(pdl=True))
    tls = {"pdl_off": record_timeline(tchain, pdl=False), "pdl_on": record_timeline(tchain, pdl=True),
           "graph_pdl_on": record_timeline(tchain, pdl=True, graph=tgraph)}
    spans = {k: timeline_spans(v) for k, v in tls.items()}
    bound = spans["pdl_off"]["sum_body_us"]
    name = f"T{t}_E{ep}"
    case = Case(name=name, params={"T": t, "E": ep, "M": t, "top_k": TOPK, "experts": N_EXPERTS},
                variants=timings, baseline="pdl_off", optimized="pdl_on", bound_us=bound,
                validation=validation, bound_kind="latency")
    if extras is not None:
        extras.setdefault("unfed_us", {})[name] = {k: round(v.median_us, 3) for k, v in unfed.items()}
        extras.setdefault("spans", {})[name] = {
            k: {kk: (round(vv, 3) if isinstance(vv, float) else [round(x, 3) for x in vv])
                for kk, vv in s.items()} for k, s in spans.items()}
        if (t, ep) == (128, 8) or smoke:
            extras.setdefault("timelines", {})[name] = {k: timeline_for_plot(v) for k, v in tls.items()}
    if progress:
        row = "  ".join(f"{k} {v.median_us:7.2f}" for k, v in timings.items())
        print(f"  {name:10s} {row}  bound {bound:6.2f}  unfed off/on "
              f"{unfed['pdl_off'].median_us:.1f}/{unfed['pdl_on'].median_us:.1f}  valid {validation['passed']}")
    return case


# ------------------------------------------------------------------------------------------------
# Napkin math for the notebook
# ------------------------------------------------------------------------------------------------
def chain_bytes(n_tokens: int, ep_size: int) -> dict:
    """Bytes each kernel touches (reads + writes), to show the chain is latency-, not bandwidth-bound."""
    t, ep, m = n_tokens, ep_size, n_tokens
    route = t * N_EXPERTS * 4 + N_EXPERTS * 4 + t * TOPK * 8
    count = ep * t * TOPK * 4 + ep * 4 * 2 + 2 * ep * t * 4
    cumsum = 2 * ep * 4 + 2 * (ep + 1) * 4
    move = 2 * (2 * t * min(ep, TOPK) * 4) + 2 * ep * m * 4
    memset = ep * m * TOPK * 4
    return {"route_noaux_tc": route, "count_and_indices": count, "cumsum_counts": cumsum, "move_indices": move,
            "memset_expert_ids": memset}


def decode_step_savings(record: dict, dims=R1) -> list[dict]:
    """Per case: what PDL saves per MoE layer and per decode step (one chain per MoE layer)."""
    rows = []
    for c in record["cases"]:
        v = c["variants"]
        per_layer = v["pdl_off"]["median_us"] - v["pdl_on"]["median_us"]
        graph_per_layer = v["graph_pdl_off"]["median_us"] - v["graph_pdl_on"]["median_us"]
        rows.append({"case": c["name"], "eager saving / layer (us)": round(per_layer, 2),
                     f"eager saving / step, {dims.num_moe_layers} MoE layers (us)":
                         round(per_layer * dims.num_moe_layers, 1),
                     "graph saving / layer (us)": round(graph_per_layer, 2),
                     "graph saving / step (us)": round(graph_per_layer * dims.num_moe_layers, 1)})
    return rows
