"""MTP LM head with tensor parallelism under attention-DP, and its distributed argmax (blog Part 3, PRs 7571/7891).

Idea: with attention-DP every rank runs the MTP draft step's LM head (W [129280, 7168] bf16, 1.85 GB) on only
its own B ~ 32 tokens, so each rank streams the whole weight for a few tokens: pure weight bandwidth. A TP
group of N ranks all-gathers its N*B hidden rows, each rank multiplies them by its 1/N slice of the
vocabulary (reading 1/N of the weight), reduces each row to a local (max, argmax), and a tiny exchange of
(value, id) pairs gives every rank the global argmax of its own rows. Weight bytes per rank drop N-fold; the
price is two small collectives, so their latency decides whether TP pays (NCCL at ~75-95 us a call does not;
peer-buffer writes over NVLink do).

Bytes/flops model (per rank, one draft step, B tokens per rank, TP size N):
  weight bytes = ceil(V/N) * H * 2; flops = 2 * N*B * ceil(V/N) * H (the same as the full head on B rows);
  intensity ~ N*B flop/byte, so the head stays memory-bound until N*B ~ peak/bandwidth (~256 tokens, the
  blog's boundary; `crossover_tokens`). Bound = weight bytes / copy bandwidth + all-gather bytes / NVLink.
Heuristic (PR 7891): N = clamp(next_pow2(256 // B), 1, GPUs per node) (`tp_size`).

Numerics and tie-break (stated once, used everywhere): logits = X W^T accumulated and returned in fp32 (bf16
operands); argmax per row returns the LOWEST vocabulary id among equal maxima. Local argmax keeps the first
maximum of a slice; the pick over ranks keeps the lowest rank on equal values; slices are in vocabulary
order, so together they give the lowest global id. Zero padding rows (the CUDA-graph static batch) have all
logits 0 and therefore id 0.

Variants (story order): `full_vocab` (a: every rank, whole vocabulary; baseline `full_1gpu`), `TPLMHead` with
impl="nccl" (b: torch.distributed all-gathers: NCCL on GPUs, gloo on CPU; `nccl_tp`) and impl="peer" (c:
kernels/peer.cu all-gather and fused argmax exchange over NVLink peer buffers; `own_tp`, the optimized one).
On CPU the peer variant runs the same protocol over shared memory (workbench/runtime/dist.py).
"""

from __future__ import annotations

import math
import subprocess
import time

import torch

from ..model import R1
from ..runtime.checks import InputError, check_tensor

SOURCES = ("workbench/techniques/lm_head_tp.py", "workbench/runtime/dist.py", "peer")
VOCAB, HIDDEN = R1.vocab, R1.hidden
CROSSOVER_RULE_TOKENS = 256  # PR 7891: "256 tokens is where the LM head becomes math bound"
NVLINK_GBPS_H100 = 450.0  # NVLink4 per direction per GPU (datasheet lead, used for the all-gather bound)


# ---------------------------------------------------------------------------------------------------------
# Napkin math
# ---------------------------------------------------------------------------------------------------------
def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def tp_size(tokens_per_rank: int, gpus_per_node: int) -> int:
    """LM-head TP size of PR 7891: clamp(next_pow2(256 // B), 1, gpus_per_node)."""
    if tokens_per_rank < 1:
        raise InputError(f"tokens_per_rank: expected >= 1 (the padded batch), got {tokens_per_rank}")
    if gpus_per_node < 1:
        raise InputError(f"gpus_per_node: expected >= 1, got {gpus_per_node}")
    return max(1, min(next_pow2(max(1, CROSSOVER_RULE_TOKENS // tokens_per_rank)), gpus_per_node))


def slice_bounds(vocab: int, tp: int, r: int) -> tuple[int, int]:
    """Vocabulary rows [lo, hi) of TP rank r: width ceil(V/tp), the last slice may be shorter."""
    width = -(-vocab // tp)
    return min(r * width, vocab), min((r + 1) * width, vocab)


def cost_model(tokens_per_rank: int, tp: int, vocab: int = VOCAB, hidden: int = HIDDEN) -> dict:
    """Bytes and flops of one draft step on one rank (bf16 weight and hidden, fp32 logits)."""
    width = -(-vocab // tp)
    rows = tp * tokens_per_rank
    return {
        "weight_bytes": width * hidden * 2,
        "logit_bytes": rows * width * 4 * 2,  # written by the GEMM, read by the max
        "flops": 2 * rows * width * hidden,
        "allgather_bytes_in": (tp - 1) * tokens_per_rank * hidden * 2,  # hidden rows a rank receives
        "pairs_bytes_in": (tp - 1) * tokens_per_rank * 8,
        "intensity_flop_per_byte": 2 * rows * width * hidden / (width * hidden * 2),
    }


def crossover_tokens(copy_TBps: float, bf16_TFLOPs: float) -> float:
    """Tokens at which the bf16 LM-head GEMM turns compute-bound: peak / bandwidth (flop per weight byte = M)."""
    return bf16_TFLOPs * 1e12 / (copy_TBps * 1e12)


def bound_us(tokens_per_rank: int, tp: int, copy_TBps: float, nvlink_GBps: float = NVLINK_GBPS_H100,
             vocab: int = VOCAB, hidden: int = HIDDEN) -> float:
    """Floor of one TP step: weight slice / copy bandwidth + received hidden rows / NVLink bandwidth."""
    c = cost_model(tokens_per_rank, tp, vocab, hidden)
    return (c["weight_bytes"] / (copy_TBps * 1e12) + c["allgather_bytes_in"] / (nvlink_GBps * 1e9)) * 1e6


# ---------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------
def tie_pairs(vocab: int) -> list[tuple[int, int]]:
    """Planted duplicate weight rows (i, j), i < j: one pair across the vocabulary halves (different TP ranks
    for any TP size >= 2) and one adjacent pair (same rank). Identical rows give exactly equal logits."""
    half = -(-vocab // 2)
    i = vocab // 7
    return [(i, i + half), (vocab // 5, vocab // 5 + 1)]


def make_weight(vocab: int = VOCAB, hidden: int = HIDDEN, seed: int = 0, kind: str = "gaussian",
                device="cpu") -> torch.Tensor:
    """LM head weight [vocab, hidden] bf16, identical on every rank for the same seed, with tie_pairs planted.

    kind="gaussian": N(0, 0.02^2) (a trained head's scale). kind="grid": integers -4..4 over 16, so every
    product and partial sum is exact in fp32 and results cannot depend on summation order (exact tie tests).
    """
    if kind not in ("gaussian", "grid"):
        raise InputError(f"kind: expected 'gaussian' or 'grid', got {kind!r}")
    dev = torch.device(device)
    g = torch.Generator(device=dev).manual_seed(seed)
    w = torch.empty(vocab, hidden, dtype=torch.bfloat16, device=dev)
    step = max(1, (64 * 2**20) // (hidden * 4))  # build in fp32 chunks of ~64 MB
    for lo in range(0, vocab, step):
        hi = min(lo + step, vocab)
        if kind == "gaussian":
            chunk = torch.randn(hi - lo, hidden, generator=g, device=dev) * 0.02
        else:
            chunk = torch.randint(-4, 5, (hi - lo, hidden), generator=g, device=dev).float() / 16
        w[lo:hi] = chunk.to(torch.bfloat16)
    for i, j in tie_pairs(vocab):
        w[j] = w[i]
    return w


def make_hidden(tokens: int, n_valid: int, w: torch.Tensor, seed: int = 0, rank: int = 0, kind: str = "gaussian",
                ties: bool = True) -> torch.Tensor:
    """This rank's padded hidden rows X [tokens, hidden] bf16: n_valid random rows, then zero padding.

    With ties=True (and n_valid >= 2), rows 0 and 1 point along the planted duplicate weight rows, so their
    maximum is an exact tie between two ids (expected answer: the lower id).
    """
    if not 0 <= n_valid <= tokens:
        raise InputError(f"n_valid: expected 0..tokens={tokens}, got {n_valid}")
    hidden, dev = w.shape[1], w.device
    g = torch.Generator(device=dev).manual_seed(seed * 1009 + rank * 7919 + 1)
    x = torch.zeros(tokens, hidden, dtype=torch.bfloat16, device=dev)
    if kind == "gaussian":
        vals = torch.randn(n_valid, hidden, generator=g, device=dev)
    else:
        vals = torch.randint(-8, 9, (n_valid, hidden), generator=g, device=dev).float() / 8
    x[:n_valid] = vals.to(torch.bfloat16)
    if ties:
        scale = 50.0 if kind == "gaussian" else 4.0  # grid: 4 * (k/16) stays on a 1/4 grid, still exact
        for row, (i, _) in enumerate(tie_pairs(w.shape[0])[:n_valid]):
            x[row] = (w[i].float() * scale).to(torch.bfloat16)
    return x


def expected_tie_ids(vocab: int, n_valid: int) -> dict[int, int]:
    """{row: id} the tie rows of make_hidden must produce (the lower id of each planted pair)."""
    return {row: i for row, (i, _) in enumerate(tie_pairs(vocab)[:n_valid])}


# ---------------------------------------------------------------------------------------------------------
# Reference and the full-vocabulary head
# ---------------------------------------------------------------------------------------------------------
def reference(x: torch.Tensor, w: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    """Argmax of X W^T in fp64, lowest id on ties. x [B, H], w [V, H] (any float dtype) -> int64 [B]."""
    best_val = torch.full((x.shape[0],), -math.inf, dtype=torch.float64, device=x.device)
    best_id = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
    xd = x.double()
    for lo in range(0, w.shape[0], chunk):
        logits = xd @ w[lo:lo + chunk].double().T
        v, i = logits.max(dim=1)  # first maximum inside the chunk
        better = v > best_val  # strict: an earlier chunk keeps a tie
        best_val = torch.where(better, v, best_val)
        best_id = torch.where(better, i + lo, best_id)
    return best_id


_MM_OUT_DTYPE: bool | None = None


def logits_fp32(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """X W^T with fp32 accumulation and fp32 output. x [M, H] bf16, w [N, H] bf16 -> [M, N] fp32.

    On CUDA this is cuBLAS with bf16 operands and an fp32 C (torch.mm(..., out_dtype=float32)); if the
    installed torch lacks it, bf16 output upcast (ties then appear at bf16 resolution; validation says so).
    """
    global _MM_OUT_DTYPE
    if x.device.type != "cuda":
        return x.float() @ w.float().T
    if _MM_OUT_DTYPE is None:
        try:
            torch.mm(x[:1], w[:8].T, out_dtype=torch.float32)
            _MM_OUT_DTYPE = True
        except (TypeError, RuntimeError, NotImplementedError):
            _MM_OUT_DTYPE = False
    if _MM_OUT_DTYPE:
        return torch.mm(x, w.T, out_dtype=torch.float32)
    return torch.nn.functional.linear(x, w).float()


def logits_path() -> str:
    return {True: "cublas bf16 x bf16 -> fp32 (torch.mm out_dtype)", False: "bf16 output upcast (fallback)",
            None: "not probed"}[_MM_OUT_DTYPE]


def full_vocab(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """(a) Whole vocabulary on this rank: argmax of fp32 logits, lowest id on ties. -> int32 [B]."""
    return logits_fp32(x, w).argmax(dim=1).to(torch.int32)


def simulate_tp(xs: list[torch.Tensor], w: torch.Tensor, tp: int) -> list[torch.Tensor]:
    """The TP algorithm in one process (no communication), for reading and for tests.

    xs: tp tensors [B, H] (one per rank of the group) -> tp int32 tensors [B]: rank r's draft ids.
    """
    x_all = torch.cat(xs)  # step 3: all-gather of the hidden rows
    b = xs[0].shape[0]
    pairs = []
    for r in range(tp):
        lo, hi = slice_bounds(w.shape[0], tp, r)
        vals, idx = logits_fp32(x_all, w[lo:hi]).max(dim=1)  # steps 4-5: local GEMM and (max, argmax)
        pairs.append((vals, idx + lo))
    vals = torch.stack([p[0] for p in pairs])  # [tp, tp*B]: step 6's all-gather of the pairs
    ids = torch.stack([p[1] for p in pairs])
    out = []
    for r in range(tp):
        v, i = vals[:, r * b:(r + 1) * b], ids[:, r * b:(r + 1) * b]
        best = v.argmax(dim=0)  # first maximum: the lowest rank on ties
        out.append(i.gather(0, best[None])[0].to(torch.int32))
    return out


# ---------------------------------------------------------------------------------------------------------
# The distributed head
# ---------------------------------------------------------------------------------------------------------
def all_gather_rows(out: torch.Tensor, x: torch.Tensor, group) -> None:
    """torch.distributed all-gather along rows: out [world*rows, ...] (NCCL or gloo)."""
    import torch.distributed as dist

    fn = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor  # renamed in newer torch
    fn(out, x, group=group)


# ---------------------------------------------------------------------------------------------------------
# (the head)
# ---------------------------------------------------------------------------------------------------------
class TPLMHead:
    """LM head of one TP group on one rank: gather hidden, vocabulary-slice GEMM, local max, exchange, pick.

    ctx: a workbench.runtime.dist.DistContext; w [V, H] bf16 (replicated; only the slice is read);
    tokens: B, rows per rank (padded); tp: group size (consecutive ranks); impl: "nccl" (torch.distributed
    collectives: NCCL on GPUs, gloo on CPU) or "peer" (PeerAllGather + PeerArgmaxPick on `workspace`).
    Every rank of the job must construct heads with the same (tp, impl) sequence.
    Call: head(x [B, H] bf16) -> int32 [B], the draft ids of this rank's rows.
    """

    def __init__(self, ctx, w: torch.Tensor, tokens: int, tp: int, impl: str = "nccl", workspace=None,
                 nblocks: int = 32):
        from ..runtime import dist

        if impl not in ("nccl", "peer"):
            raise InputError(f"impl: expected 'nccl' or 'peer', got {impl!r}")
        check_tensor("w", w, dtype=torch.bfloat16, device=ctx.device.type, ndim=2, contiguous=True)
        self.ctx, self.w, self.tokens, self.tp, self.impl = ctx, w, int(tokens), int(tp), impl
        self.group, self.ranks = ctx.subgroup(tp)
        self.r = self.ranks.index(ctx.rank)
        self.lo, self.hi = slice_bounds(w.shape[0], tp, self.r)
        hidden = w.shape[1]
        if impl == "peer":
            if workspace is None:
                raise InputError("workspace: impl='peer' needs a dist.PeerWorkspace over this TP group's ranks")
            if workspace.ranks != self.ranks:
                raise InputError(f"workspace: expected one over ranks {self.ranks}, got {workspace.ranks}")
            self.ag = dist.PeerAllGather(workspace, self.tokens * hidden * 2, nblocks=nblocks)
            self.pick = dist.PeerArgmaxPick(workspace, self.tokens)

    def _check(self, x):
        check_tensor("x", x, dtype=torch.bfloat16, device=self.ctx.device.type, shape=[self.tokens, self.w.shape[1]],
                     contiguous=True)

    def __call__(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        """Draft ids of this rank's rows. `w` swaps in another weight of the same shape (validation)."""
        self._check(x)
        w_r = (self.w if w is None else w)[self.lo:self.hi]
        if self.tp == 1:
            return full_vocab(x, w_r)
        b = self.tokens
        if self.impl == "nccl":
            x_all = torch.empty(self.tp * b, x.shape[1], dtype=x.dtype, device=x.device)
            all_gather_rows(x_all, x, self.group)
        else:
            x_all = self.ag(x)
        vals, idx = logits_fp32(x_all, w_r).max(dim=1)  # local max and first local argmax per gathered row
        if self.impl == "peer":
            return self.pick(vals, idx, self.lo)
        pairs = torch.stack([vals, (idx + self.lo).to(torch.float32)], dim=1)  # ids < 2^24: exact in fp32
        gathered = torch.empty(self.tp * self.tp * b, 2, dtype=torch.float32, device=x.device)
        all_gather_rows(gathered, pairs, self.group)
        mine = gathered.view(self.tp, self.tp * b, 2)[:, self.r * b:(self.r + 1) * b]  # [tp, B, 2]: every rank's candidate for our rows
        best = mine[..., 0].argmax(dim=0)  # first maximum: lowest rank on ties
        return mine[..., 1].gather(0, best[None])[0].to(torch.int32)

    def check(self):
        """Raise PeerTimeoutError naming the peer if a peer kernel timed out (syncs the device)."""
        if self.impl == "peer":
            self.ag.check()
            self.pick.check()


# ---------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------
def validate(ids: torch.Tensor, x: torch.Tensor, w: torch.Tensor, n_valid: int, kind: str,
             ref: torch.Tensor | None = None) -> dict:
    """Compare draft ids [B] with the fp64 reference argmax.

    Metric: number of rows whose id differs. Padding rows (n_valid..B) must be id 0 and planted tie rows the
    lower id, exactly. kind="grid": every logit is exact in fp32, so any difference fails. kind="gaussian":
    a difference passes only as an fp32 near-tie, i.e. the fp64 logits of the two ids differ by at most
    2^-14 * sum_k |x_k w_k| (fp32 accumulation over K=7168 terms has a rounding error far below that).
    """
    ref = reference(x, w) if ref is None else ref
    ids64 = ids.to(torch.int64).to(ref.device)
    diff = (ids64 != ref).nonzero().flatten().tolist()
    near = 0
    for row in diff:
        xr = x[row].double()
        a, b = w[ref[row]].double(), w[ids64[row]].double()
        gap = float((xr @ a - xr @ b).abs())
        scale = float(torch.maximum((xr * a).abs().sum(), (xr * b).abs().sum()))
        if kind == "gaussian" and gap <= 2.0**-14 * scale:
            near += 1
    pad_ok = bool((ids64[n_valid:] == 0).all())
    ties = expected_tie_ids(w.shape[0], n_valid)
    tie_ok = all(int(ids64[r]) == i for r, i in ties.items()) if kind == "grid" else True
    passed = (len(diff) - near == 0) and pad_ok and tie_ok
    return {"mismatches": len(diff), "near_ties": near, "padding_rows_zero": pad_ok, "ties_lowest_id": tie_ok,
            "passed": bool(passed)}


# ---------------------------------------------------------------------------------------------------------
# CPU ranks (gloo): the algorithm at small sizes, for tests and the notebook
# ---------------------------------------------------------------------------------------------------------
def run_ranks(ctx, tokens: int = 8, n_valid: int = 6, vocab: int = 1000, hidden: int = 64, tp: int | None = None,
              kinds=("gaussian", "grid"), seed: int = 0, steps: int = 2) -> dict:
    """One rank of a validation job at small sizes (start it with dist.spawn(run_ranks, N, ...)).

    Every rank builds the same W and its own X (n_valid rows + zero padding) on its device, runs (a) full
    vocabulary, (b) the collective TP head (gloo on CPU, NCCL on GPUs) and (c) the peer-buffer TP head (on
    CPU the shared-memory model of the NVLink protocol, on GPUs kernels/peer.cu) `steps` times on fresh X
    (so buffers are reused across steps), and returns ids, the fp64 reference and each variant's validation.
    """
    from ..runtime import dist

    tp = ctx.world_size if tp is None else tp
    _, ranks = ctx.subgroup(tp)
    ws = dist.PeerWorkspace(ctx, 4 << 20, ranks=ranks, tag=f"lmhead_tp{tp}", timeout_s=20.0)
    out = {"rank": ctx.rank, "tp": tp, "group": ranks, "runs": []}
    for kind in kinds:
        w = make_weight(vocab, hidden, seed=seed, kind=kind, device=ctx.device)
        heads = {"nccl_tp": TPLMHead(ctx, w, tokens, tp, "nccl"),
                 "own_tp": TPLMHead(ctx, w, tokens, tp, "peer", ws, nblocks=4)}
        for step in range(steps):
            x = make_hidden(tokens, n_valid, w, seed=seed + 100 * step, rank=ctx.rank, kind=kind)
            ref = reference(x, w)
            res = {"kind": kind, "step": step, "ref": ref.cpu(), "full_1gpu": full_vocab(x, w)}
            for name, head in heads.items():
                res[name] = head(x)
            heads["own_tp"].check()
            res["validation"] = {k: validate(res[k], x, w, n_valid, kind, ref) for k in ("full_1gpu", *heads)}
            for k in ("full_1gpu", *heads):
                res[k] = res[k].cpu()
            out["runs"].append(res)
    ws.close()
    return out


# ---------------------------------------------------------------------------------------------------------
# GPU benchmark (spawns its own ranks: one per visible GPU)
# ---------------------------------------------------------------------------------------------------------
def topology_summary() -> dict:
    """GPU count and links from `nvidia-smi topo -m` (e.g. {'gpus': 4, 'links': {'NV18': 12}, 'matrix': ...})."""
    try:
        out = subprocess.run(["nvidia-smi", "topo", "-m"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return {"gpus": torch.cuda.device_count(), "error": str(e)}
    rows = [ln.split() for ln in out.splitlines() if ln.startswith("GPU")]
    n = len(rows)
    links: dict[str, int] = {}
    for i, row in enumerate(rows):
        for j in range(n):
            if j != i and 1 + j < len(row):
                links[row[1 + j]] = links.get(row[1 + j], 0) + 1
    kinds = sorted(links)
    desc = ", ".join(f"{k}: {v // 2} pairs" for k, v in sorted(links.items()))  # the matrix is symmetric
    return {"gpus": n, "links": links, "summary": f"{n} GPUs; GPU-GPU links: {desc}" if n else "no GPUs listed",
            "all_nvlink": bool(kinds) and all(k.startswith("NV") for k in kinds), "matrix": out.strip()}


def _time_dist(ctx, fn, barrier, reps: int, inner: int, graph: bool = True):
    """Time fn on every rank; per sample the slowest rank counts. Returns (Timing, method dict).

    Before each sample a device barrier (kernels/peer.cu) lines the GPUs up, then `inner` calls (one CUDA
    graph replay when graph=True) run between two events. Every rank does exactly the same calls.
    """
    from ..bench.timing import summarize

    stream = torch.cuda.current_stream()
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    g, capture_error = None, None
    if graph:
        try:
            g = torch.cuda.CUDAGraph()
            side = torch.cuda.Stream()
            side.wait_stream(stream)
            with torch.cuda.stream(side):
                fn()
                torch.cuda.synchronize()
                with torch.cuda.graph(g, stream=side):
                    for _ in range(inner):
                        fn()
            torch.cuda.synchronize()
        except Exception as e:  # e.g. a collective that cannot be captured: every rank falls back together
            g, capture_error = None, f"{type(e).__name__}: {e}"[:300]
        errors = ctx.all_gather_object(capture_error, tag="capture")
        if any(errors):
            g, graph = None, False
            capture_error = next(e for e in errors if e)
        elif g is not None:
            g.replay()
            torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for i in range(reps):
        barrier()
        starts[i].record(stream)
        if g is not None:
            g.replay()
        else:
            for _ in range(inner):
                fn()
        ends[i].record(stream)
    torch.cuda.synchronize()
    barrier.check()
    mine = [starts[i].elapsed_time(ends[i]) * 1e3 / inner for i in range(reps)]
    every = ctx.all_gather_object(mine, tag="timing")
    worst = [max(col) for col in zip(*every)]
    method = {"timer": "cuda_graph" if graph else "cuda_event", "inner": inner, "reps": reps,
              "ranks": ctx.world_size, "per_sample": "max over ranks", "aligned_by": "peer device barrier"}
    if capture_error:
        method["graph_capture_failed"] = capture_error
    return summarize(worst, method), method


def _bench_rank(ctx, smoke: bool = False, progress: bool = True, tokens_list=None, tp_list=None,
                roofline_tokens=None):
    """One rank of the GPU benchmark. Returns (cases, extra) on rank 0, None elsewhere."""
    from ..bench import Case, current_ceilings
    from ..runtime import dist

    world, rank, dev = ctx.world_size, ctx.rank, ctx.device
    log = (lambda *a: print(*a, flush=True)) if (progress and rank == 0) else (lambda *a: None)
    tokens_list = tokens_list or ([32] if smoke else [8, 16, 32, 64])
    tp_list = tp_list or [n for n in (2, 4, 8) if n <= world and world % n == 0]
    roofline_tokens = roofline_tokens or ([1, 32, 256, 1024] if smoke else [1, 2, 4, 8, 16, 32, 64, 128, 256, 512,
                                                                          1024, 2048, 4096])
    reps, inner = (10, 4) if smoke else (25, 8)
    extra: dict = {"gpus": world, "notes": []}
    if rank == 0:
        extra["topology"] = topology_summary()
        log("topology:", extra["topology"].get("summary"))
        ceil = current_ceilings()
        extra["ceilings"] = {"device": ceil.device, "copy_TBps": ceil.copy_TBps, "bf16_TFLOPs": ceil.bf16_TFLOPs,
                             "fp8_TFLOPs": ceil.fp8_TFLOPs}
        log("ceilings:", extra["ceilings"])
    ceil_d = ctx.all_gather_object(extra.get("ceilings"), tag="ceilings", timeout_s=600)[0]

    # One workspace over all ranks (device barrier, world all-gathers), one per TP subgroup size.
    world_ws = dist.PeerWorkspace(ctx, 128 << 20, tag="world", timeout_s=10.0)
    barrier = dist.PeerBarrier(world_ws)
    ws_by_tp = {}
    for tp in tp_list:
        _, ranks = ctx.subgroup(tp)
        ws_by_tp[tp] = world_ws if tp == world else dist.PeerWorkspace(ctx, 64 << 20, ranks=ranks, tag=f"tp{tp}",
                                                                      timeout_s=10.0)
    barrier()
    torch.cuda.synchronize()
    barrier.check()
    log("peer workspaces open; device barrier ok")

    w = make_weight(seed=1, device=dev)
    w_grid = make_weight(seed=2, kind="grid", device=dev)
    sums = ctx.all_gather_object(float(w[::997].float().sum()), tag="wsum")
    if len(set(sums)) != 1:
        raise RuntimeError(f"rank {rank}: LM head weights differ across ranks (checksums {sums})")
    logits_fp32(w[:1], w[:8])
    extra["logits_path"] = logits_path()
    cases: list = []

    # --- 1. roofline of the full head on one GPU (rank 0; the others wait) ---------------------------------
    if rank == 0:
        from ..bench import time_cuda

        pts = []
        for m in roofline_tokens:
            x = make_hidden(m, m, w, seed=5, ties=False)
            t_gemm = time_cuda(lambda x=x: logits_fp32(x, w), reps=8 if m <= 1024 else 5, warmup=2, l2="warm")
            t_head = time_cuda(lambda x=x: full_vocab(x, w), reps=8 if m <= 1024 else 5, warmup=2, l2="warm")
            flops = 2 * m * VOCAB * HIDDEN
            byts = VOCAB * HIDDEN * 2 + m * HIDDEN * 2 + m * VOCAB * 4
            pts.append({"tokens": m, "gemm_us": round(t_gemm.median_us, 2), "head_us": round(t_head.median_us, 2),
                        "bound_us": round(ceil.bound_us(bytes=byts, flops=flops), 2),
                        "tflops": round(flops / t_gemm.median_us / 1e6, 1)})
            log(f"  roofline M={m:5d}: gemm {t_gemm.median_us:9.1f} us, head {t_head.median_us:9.1f} us, "
                f"bound {pts[-1]['bound_us']:9.1f} us, {pts[-1]['tflops']} TFLOP/s")
        floor = min(p["gemm_us"] for p in pts if p["tokens"] <= 64)
        rate = max(p["tflops"] for p in pts)  # achieved peak of the head's GEMM
        extra["roofline"] = {"points": pts, "model_crossover_tokens": round(crossover_tokens(ceil.copy_TBps,
                                                                                             ceil.bf16_TFLOPs), 1),
                             "measured_crossover_tokens": round(floor * 1e-6 * rate * 1e12 / (2 * VOCAB * HIDDEN), 1),
                             "note": "measured crossover: tokens where the flat weight-read floor meets the best "
                                     "achieved GEMM rate"}
        log("crossover tokens: model", extra["roofline"]["model_crossover_tokens"], "measured",
            extra["roofline"]["measured_crossover_tokens"])
    ctx.barrier("roofline", timeout_s=600)

    # --- 2. all-gather of B x 7168 bf16: NCCL vs peer buffers; pick the block count in this run -----------
    def ag_case(b, tp, nblocks_list):
        group, ranks = ctx.subgroup(tp)
        x = make_hidden(b, b, w, seed=11, rank=rank, ties=False)
        want = torch.cat([make_hidden(b, b, w, seed=11, rank=q, ties=False) for q in ranks])
        out_n = torch.empty_like(want)
        variants, valid, ops = {}, {"passed": True}, {}

        def nccl():
            all_gather_rows(out_n, x, group)
        nccl()
        torch.cuda.synchronize()
        valid["nccl.exact"] = bool(torch.equal(out_n, want))
        variants["nccl"], _ = _time_dist(ctx, nccl, barrier, reps, inner)
        for nb in nblocks_list:
            op = dist.PeerAllGather(ws_by_tp[tp], b * HIDDEN * 2, nblocks=nb, timeout_s=10.0)
            out_p = torch.full_like(want, float("nan"))
            op(x, out_p)
            torch.cuda.synchronize()
            op.check()
            ok = bool(torch.equal(out_p, want))
            name = f"own_nb{nb}"
            valid[f"{name}.exact"] = ok
            variants[name], _ = _time_dist(ctx, lambda op=op, out_p=out_p: op(x, out_p), barrier, reps, inner)
            op(x, out_p)  # after the timing loop: reused buffers still give the right answer
            torch.cuda.synchronize()
            op.check()
            valid[f"{name}.exact_after_reuse"] = bool(torch.equal(out_p, want))
            ops[nb] = op
        valid["passed"] = all(v for k, v in valid.items() if k != "passed")
        return variants, valid

    def ag_bound(b, tp):
        return (tp - 1) * b * HIDDEN * 2 / (NVLINK_GBPS_H100 * 1e9) * 1e6

    best_nb = 32
    if tp_list:
        tp0, b0 = max(tp_list), 32 if 32 in tokens_list else tokens_list[0]
        variants, valid = ag_case(b0, tp0, [8, 16, 32, 64, 128] if not smoke else [16, 32])
        own = {k: v for k, v in variants.items() if k.startswith("own_nb")}
        best_nb = int(min(own, key=lambda k: own[k].median_us)[6:])
        variants["own"] = variants[f"own_nb{best_nb}"]
        cases.append(Case(f"allgather_{b0}x{HIDDEN}_{tp0}gpu", {"tokens_per_rank": b0, "gpus": tp0, "nblocks": best_nb,
                                                              "bytes_in_per_rank": (tp0 - 1) * b0 * HIDDEN * 2,
                                                              "nvlink_GBps_for_bound": NVLINK_GBPS_H100},
                          variants, "nccl", "own", ag_bound(b0, tp0), valid))
        log(f"  allgather {b0}x{HIDDEN} on {tp0} GPUs: " + ", ".join(f"{k} {v.median_us:.1f}" for k, v in
                                                                    variants.items()) + f" us; best nblocks {best_nb}")
        for tp in tp_list:
            for b in tokens_list:
                if (b, tp) == (b0, tp0):
                    continue
                variants, valid = ag_case(b, tp, [best_nb])
                variants["own"] = variants.pop(f"own_nb{best_nb}")
                cases.append(Case(f"allgather_{b}x{HIDDEN}_{tp}gpu", {"tokens_per_rank": b, "gpus": tp,
                                                                      "nblocks": best_nb,
                                                                      "bytes_in_per_rank": (tp - 1) * b * HIDDEN * 2,
                                                                      "nvlink_GBps_for_bound": NVLINK_GBPS_H100},
                                  variants, "nccl", "own", ag_bound(b, tp), valid))
                log(f"  allgather {b}x{HIDDEN} on {tp} GPUs: nccl {variants['nccl'].median_us:.1f} us, own "
                    f"{variants['own'].median_us:.1f} us")
    extra["allgather_nblocks"] = best_nb

    # --- 3. the LM head: full vocabulary vs NCCL TP vs peer-buffer TP ----------------------------------------
    for tp in tp_list:
        for b in tokens_list:
            n_valid = max(2, b - 3)  # the last rows are padding
            heads = {"nccl_tp": TPLMHead(ctx, w, b, tp, "nccl"),
                     "own_tp": TPLMHead(ctx, w, b, tp, "peer", ws_by_tp[tp], nblocks=best_nb)}
            valid: dict = {"passed": True}
            for kind, wk in (("gaussian", w), ("grid", w_grid)):
                x = make_hidden(b, n_valid, wk, seed=21 + b + tp, rank=rank, kind=kind)
                ref = reference(x, wk)
                got = {"full_1gpu": full_vocab(x, wk)}
                for name, head in heads.items():
                    got[name] = head(x, wk)
                torch.cuda.synchronize()
                heads["own_tp"].check()
                for name, ids in got.items():
                    v = validate(ids, x, wk, n_valid, kind, ref)
                    for k, val in v.items():
                        valid[f"{kind}.{name}.{k}"] = val
                    valid["passed"] &= v["passed"]
                    # The criterion: every TP variant equals the single-GPU head's ids.
                    if name != "full_1gpu":
                        same = bool(torch.equal(ids, got["full_1gpu"]))
                        valid[f"{kind}.{name}.equals_full_1gpu"] = same
                        if kind == "grid":
                            valid["passed"] &= same
            all_valid = ctx.all_gather_object(valid, tag="valid")
            valid = {k: (all(v[k] for v in all_valid) if isinstance(valid[k], bool) else
                         max(v[k] for v in all_valid)) for k in valid}
            x = make_hidden(b, n_valid, w, seed=31 + b, rank=rank)
            variants = {"full_1gpu": _time_dist(ctx, lambda x=x: full_vocab(x, w), barrier, reps, inner)[0]}
            for name, head in heads.items():
                variants[name] = _time_dist(ctx, lambda x=x, head=head: head(x), barrier, reps, inner)[0]
            heads["own_tp"].check()
            variants["nccl_tp_eager"] = _time_dist(ctx, lambda x=x, h=heads["nccl_tp"]: h(x), barrier, reps, inner,
                                                   graph=False)[0]
            cm = cost_model(b, tp)
            cases.append(Case(f"tokens{b}_tp{tp}", {"tokens_per_rank": b, "tp": tp, "n_valid": n_valid,
                                                    "heuristic_tp": tp_size(b, world), **cm},
                              variants, "full_1gpu", "own_tp",
                              bound_us(b, tp, ceil_d["copy_TBps"]), valid))
            log(f"  LM head B={b:3d} TP{tp}: " + ", ".join(f"{k} {v.median_us:.1f}" for k, v in variants.items())
                + f" us (bound {cases[-1].bound_us:.1f}); valid {valid['passed']}")
    torch.cuda.synchronize()
    barrier()
    torch.cuda.synchronize()
    for ws in {id(v): v for v in [world_ws, *ws_by_tp.values()]}.values():
        ws.close()
    return (cases, extra) if rank == 0 else None


def benchmark_full(smoke: bool = False, progress: bool = True, nprocs: int | None = None):
    """(cases, extra) on all visible GPUs: spawns one rank per GPU (or joins a torchrun job)."""
    import os

    from ..runtime import compile_kernel, device_arch, dist

    compile_kernel("peer", arch=device_arch())  # fill the cubin cache once, before the ranks race for it
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        ctx = dist.init_from_env(timeout_s=600)
        return _bench_rank(ctx, smoke, progress)
    n = nprocs or torch.cuda.device_count()
    t0 = time.time()
    res = dist.spawn(_bench_rank, n, smoke, progress, backend="nccl", timeout_s=1800, peer_timeout_s=600,
                     threads_per_rank=None)
    if progress:
        print(f"lm_head_tp: {n} ranks done in {time.time() - t0:.0f} s", flush=True)
    return res[0]


def benchmark(smoke: bool = False, progress: bool = True):
    """Cases tokens{B}_tp{N} (full_1gpu / nccl_tp / own_tp) and allgather_{B}x7168_{N}gpu (nccl / own).

    Spawns its own ranks, one per visible GPU (NCCL); with one GPU only the roofline runs and no TP case
    is recorded. The number of GPUs and their links go to the record through benchmark_full's `extra`
    (scripts/gpu_lm_head_tp.py writes them).
    """
    cases, _extra = benchmark_full(smoke, progress)
    return cases
