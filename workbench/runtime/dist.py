"""Multi-GPU runtime: one process per GPU on torch.distributed, peer buffers, and timeouts that name the peer.

Three layers, each usable alone:

1. Process groups. `init_from_env()` sets up a rank started by `torchrun` (NCCL on GPUs, gloo on CPU);
   `spawn(fn, nprocs, *args)` starts the ranks itself (torch.multiprocessing, start method "spawn"), runs
   a package function `fn(ctx, *args)` on each and returns the list of their results, in rank order, to
   the caller (a notebook, a test, a script). Both give a `DistContext`: rank, world size, device, the
   key-value store, subgroups, and `barrier()`, a store barrier whose timeout names the missing rank.
2. Peer buffers. `PeerWorkspace` is one allocation per rank that every rank of a group can write: on GPUs a
   cuMemAlloc buffer whose CUDA IPC handle travels through the store and is opened by every peer (stores
   then go over NVLink); on CPU a shared-memory file that every rank maps (the same layout and protocol, so
   the CPU tests exercise the real protocol). NVLink multicast is never used (see MULTICAST_OFF_ENV).
3. Peer collectives built on the workspace (`PeerBarrier`, `PeerAllGather`, `PeerArgmaxPick`): on GPUs the
   kernels of kernels/peer.cu, on CPU a Python model of the same protocol (data, then a flag per (source,
   block) holding a step number; reader spins with a timeout; step-parity double buffering). A wait past
   its timeout raises PeerTimeoutError naming the peer, never hangs.

Environment: NVLink multicast must stay off on the shared GPU hosts; `ensure_multicast_off()` sets
NCCL_NVLS_ENABLE=0, TORCH_SYMM_MEM_DISABLE_MULTICAST=1 and NVSHMEM_DISABLE_NVLS=1 in this process, and the
spawned ranks inherit them.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import os
import pickle
import queue as _queue
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .checks import InputError, check_tensor

MULTICAST_OFF_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
DEFAULT_PEER_TIMEOUT_S = 30.0


def ensure_multicast_off() -> None:
    """Force NVLink multicast off for NCCL, torch symmetric memory and NVSHMEM (inherited by child ranks)."""
    os.environ.update(MULTICAST_OFF_ENV)


ensure_multicast_off()


class PeerTimeoutError(RuntimeError):
    """A rank waited past its timeout for a peer; `.rank` is the waiter, `.peer` the rank that never came."""

    def __init__(self, rank: int, peer: int | None, what: str, timeout_s: float):
        self.rank, self.peer, self.what, self.timeout_s = rank, peer, what, timeout_s
        who = f"rank {peer}" if peer is not None else "a peer"
        super().__init__(f"rank {rank}: {what}: waited {timeout_s:g} s for {who}, which never arrived")


class RankFailedError(RuntimeError):
    """A spawned rank raised or died; carries every failing rank's message (and traceback)."""

    def __init__(self, failures: dict[int, str]):
        self.failures = dict(sorted(failures.items()))
        lines = [f"{len(self.failures)} rank(s) failed:"]
        for r, msg in self.failures.items():
            lines.append(f"--- rank {r} ---\n{msg.rstrip()}")
        super().__init__("\n".join(lines))


# ---------------------------------------------------------------------------------------------------------
# Process groups
# ---------------------------------------------------------------------------------------------------------
@dataclass
class DistContext:
    """One rank's view of the job. `store` is a key-value store shared by all ranks (prefix 'wb/')."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str
    store: object
    timeout_s: float = DEFAULT_PEER_TIMEOUT_S
    _counts: dict = field(default_factory=dict, repr=False)
    _subgroups: dict = field(default_factory=dict, repr=False)

    def _next(self, tag: str) -> int:
        self._counts[tag] = self._counts.get(tag, 0) + 1
        return self._counts[tag]

    def barrier(self, tag: str = "barrier", timeout_s: float | None = None, ranks: list[int] | None = None) -> None:
        """Store barrier over `ranks` (default all); raises PeerTimeoutError naming the first missing rank."""
        ranks = list(range(self.world_size)) if ranks is None else list(ranks)
        n = self._next(f"barrier/{tag}/{','.join(map(str, ranks))}")
        prefix = f"barrier/{tag}/{n}"
        self.store.set(f"{prefix}/{self.rank}", "1")
        self.wait_keys({r: f"{prefix}/{r}" for r in ranks if r != self.rank}, f"barrier {tag!r} #{n}", timeout_s)

    def wait_keys(self, keys_by_rank: dict[int, str], what: str, timeout_s: float | None = None) -> None:
        """Wait until every rank's key is in the store; a timeout names the rank whose key is missing."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        for peer, key in keys_by_rank.items():
            left = max(deadline - time.monotonic(), 0.001)
            try:
                self.store.wait([key], _dt.timedelta(seconds=left))
            except Exception as e:  # TCPStore/FileStore raise DistStoreError or RuntimeError on timeout
                if "timeout" not in str(e).lower() and "timed out" not in str(e).lower():
                    raise
                raise PeerTimeoutError(self.rank, peer, what, timeout_s) from None

    def all_gather_object(self, obj, ranks: list[int] | None = None, tag: str = "objects", timeout_s=None) -> list:
        """Every rank's `obj` (picklable), in rank order, through the store (works on any backend)."""
        ranks = list(range(self.world_size)) if ranks is None else list(ranks)
        n = self._next(f"obj/{tag}/{','.join(map(str, ranks))}")
        prefix = f"obj/{tag}/{n}"
        self.store.set(f"{prefix}/{self.rank}", pickle.dumps(obj))
        self.wait_keys({r: f"{prefix}/{r}" for r in ranks if r != self.rank}, f"exchange {tag!r} #{n}", timeout_s)
        return [obj if r == self.rank else pickle.loads(self.store.get(f"{prefix}/{r}")) for r in ranks]

    def subgroup(self, size: int):
        """(process group, member ranks) of the consecutive group of `size` ranks holding this rank.

        Every rank must call this with the same sizes in the same order (torch.distributed.new_group rule).
        size == world_size gives the default group.
        """
        import torch.distributed as dist

        if size < 1 or self.world_size % size:
            raise InputError(f"size: expected a divisor of the world size {self.world_size}, got {size}")
        if size not in self._subgroups:
            if size == self.world_size:
                self._subgroups[size] = (dist.group.WORLD, list(range(self.world_size)))
            else:
                mine = None
                for start in range(0, self.world_size, size):
                    ranks = list(range(start, start + size))
                    g = dist.new_group(ranks)
                    if self.rank in ranks:
                        mine = (g, ranks)
                self._subgroups[size] = mine
        return self._subgroups[size]


def default_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def _prefix_store(store):
    import torch.distributed as dist

    return dist.PrefixStore("wb/", store)


def init_from_env(backend: str | None = None, timeout_s: float = DEFAULT_PEER_TIMEOUT_S) -> DistContext:
    """Set up this rank from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT)."""
    import torch.distributed as dist

    ensure_multicast_off()
    for var in ("RANK", "WORLD_SIZE"):
        if var not in os.environ:
            raise RuntimeError(f"init_from_env: {var} is not set; start the script with "
                               "`torchrun --nproc-per-node N script.py`, or use dist.spawn()")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    backend = backend or default_backend()
    device = _set_device(backend, local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world,
                                timeout=_dt.timedelta(seconds=timeout_s))
    store = dist.distributed_c10d._get_default_store()
    return DistContext(rank, world, local_rank, device, backend, _prefix_store(store), timeout_s)


def _set_device(backend: str, local_rank: int) -> torch.device:
    if backend == "nccl":
        if not torch.cuda.is_available() or local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"rank with local rank {local_rank}: NCCL needs one GPU per rank, torch sees "
                               f"{torch.cuda.device_count() if torch.cuda.is_available() else 0}")
        torch.cuda.set_device(local_rank)
        try:  # CuPy launches our kernels: make its current device the rank's GPU too
            import cupy

            cupy.cuda.Device(local_rank).use()
        except ImportError:
            pass
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def shutdown(ctx: DistContext | None = None) -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _resolve(fn):
    """A callable, or 'package.module:function'. Spawned ranks need an importable (not __main__) function."""
    if isinstance(fn, str):
        mod, _, name = fn.partition(":")
        if not name:
            raise InputError(f"fn: expected 'package.module:function', got {fn!r}")
        return getattr(importlib.import_module(mod), name)
    if getattr(fn, "__module__", None) in (None, "__main__") or "<locals>" in getattr(fn, "__qualname__", ""):
        raise InputError(f"fn: expected a module-level function of an importable module (spawned ranks import it), "
                         f"got {getattr(fn, '__qualname__', fn)!r} from module {getattr(fn, '__module__', None)!r}")
    return fn


def _rank_main(rank, world, port, backend, timeout_s, fn_ref, args, kwargs, results, threads):
    """Entry point of a spawned rank: init, run fn(ctx, *args), post ('ok'|'error', payload), tear down."""
    import torch.distributed as dist

    ensure_multicast_off()
    if threads:
        torch.set_num_threads(threads)
    try:
        device = _set_device(backend, rank)
        store = dist.TCPStore("127.0.0.1", port, world + 1, is_master=False,
                              timeout=_dt.timedelta(seconds=max(timeout_s, 30)))
        dist.init_process_group(backend, store=store, rank=rank, world_size=world,
                                timeout=_dt.timedelta(seconds=timeout_s))
        ctx = DistContext(rank, world, rank, device, backend, _prefix_store(store), timeout_s)
        fn = _resolve(fn_ref)
        out = fn(ctx, *args, **kwargs)
        results.put((rank, "ok", pickle.dumps(out)))
    except BaseException as e:  # report everything, including KeyboardInterrupt, to the parent
        tb = traceback.format_exc()
        try:
            payload = pickle.dumps(e)
        except Exception:
            payload = None
        results.put((rank, "error", (f"{type(e).__name__}: {e}\n{tb}", payload)))
        return
    finally:
        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:
                pass


def spawn(fn: Callable | str, nprocs: int, *args, backend: str | None = None, timeout_s: float = 600.0,
          peer_timeout_s: float = DEFAULT_PEER_TIMEOUT_S, threads_per_rank: int | None = 1, **kwargs) -> list:
    """Run `fn(ctx, *args, **kwargs)` on `nprocs` fresh ranks; return their results in rank order.

    fn: a module-level function of an importable module, or 'package.module:function' (a notebook cell's
    function cannot be imported by a fresh process). backend: 'nccl' (one GPU per rank, the default when
    torch sees GPUs) or 'gloo' (CPU). timeout_s bounds the whole job; peer_timeout_s is each rank's
    collective and barrier timeout. A rank that raises or dies makes spawn raise RankFailedError with every
    failing rank's message; if the job outlasts timeout_s the ranks still running are named and killed.
    Results and arguments must be picklable (tensors are returned by value).
    """
    import multiprocessing as mp

    import torch.distributed as dist

    if nprocs < 1:
        raise InputError(f"nprocs: expected >= 1, got {nprocs}")
    backend = backend or default_backend()
    if backend == "nccl" and torch.cuda.device_count() < nprocs:
        raise InputError(f"nprocs: NCCL needs one GPU per rank; asked for {nprocs}, torch sees "
                         f"{torch.cuda.device_count()}")
    _resolve(fn)  # fail here, not in every child, when fn cannot be imported
    ensure_multicast_off()
    # The parent hosts the store, so ranks can exit in any order without taking it down.
    store = dist.TCPStore("127.0.0.1", 0, nprocs + 1, is_master=True, wait_for_workers=False,
                          timeout=_dt.timedelta(seconds=max(peer_timeout_s, 30)))
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_rank_main, daemon=True,
                         args=(r, nprocs, store.port, backend, peer_timeout_s, fn, args, kwargs, results,
                               threads_per_rank))
             for r in range(nprocs)]
    for p in procs:
        p.start()
    done: dict[int, object] = {}
    failures: dict[int, str] = {}
    first_failure_t = None
    deadline = time.monotonic() + timeout_s
    try:
        while len(done) + len(failures) < nprocs:
            try:
                rank, status, payload = results.get(timeout=0.2)
                if status == "ok":
                    done[rank] = pickle.loads(payload)
                else:
                    failures[rank] = payload[0]
                    first_failure_t = first_failure_t or time.monotonic()
                continue
            except _queue.Empty:
                pass
            now = time.monotonic()
            for r, p in enumerate(procs):  # a rank that died without reporting (segfault, OOM kill)
                if r not in done and r not in failures and p.exitcode is not None:
                    time.sleep(0.2)  # its message may still be in the pipe
                    if results.empty():
                        failures[r] = f"process exited with code {p.exitcode} without a result"
                        first_failure_t = first_failure_t or now
            # After a failure, give the other ranks a few seconds to report theirs (e.g. a peer timeout).
            if first_failure_t is not None and now - first_failure_t > min(5.0, peer_timeout_s + 2):
                for r in range(nprocs):
                    if r not in done and r not in failures:
                        failures[r] = "still running when another rank failed (terminated)"
                break
            if now > deadline:
                for r in range(nprocs):
                    if r not in done and r not in failures:
                        failures[r] = f"still running after the job timeout of {timeout_s:g} s (terminated)"
                break
    finally:
        for p in procs:
            if p.is_alive():
                p.join(timeout=2.0 if not failures else 0.1)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5.0)
        results.close()
    if failures:
        raise RankFailedError(failures)
    return [done[r] for r in range(nprocs)]


# ---------------------------------------------------------------------------------------------------------
# Peer buffers
# ---------------------------------------------------------------------------------------------------------
def _cu_check(result, what: str):
    """Unpack a cuda-bindings driver result (err, *values); raise naming the call on error."""
    from cuda.bindings import driver as cu

    err, *vals = result if isinstance(result, tuple) else (result,)
    if err != cu.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"{what} failed: {err.name}")
    return vals[0] if len(vals) == 1 else (tuple(vals) if vals else None)


class PeerWorkspace:
    """One buffer per rank of a group that every rank of the group can read and write.

    GPU (`kind='cuda_ipc'`): cuMemAlloc on this rank's device; the 64-byte IPC handle goes through the store;
    every peer opens it with cuIpcOpenMemHandle (lazy peer access), so `peer_ptr(p)` is a device address in
    this process that NVLink stores reach. CPU (`kind='shm'`): one shared-memory file holding every rank's
    buffer, mapped by all ranks (the CPU model of the same thing).

    Regions: `alloc(nbytes)` hands out 256-byte aligned offsets; every rank must make the same allocation
    calls in the same order, so an offset means the same region on every rank. The buffer is zeroed at
    creation (flags start at step 0) and a barrier ends the constructor, so no peer writes before that.
    """

    def __init__(self, ctx: DistContext, nbytes: int, ranks: list[int] | None = None, tag: str = "ws",
                 timeout_s: float | None = None):
        self.ctx = ctx
        self.ranks = list(range(ctx.world_size)) if ranks is None else list(ranks)
        if ctx.rank not in self.ranks:
            raise InputError(f"ranks: this rank ({ctx.rank}) must be a member, got {self.ranks}")
        self.rank = self.ranks.index(ctx.rank)  # rank within the group
        self.world = len(self.ranks)
        self.nbytes = int(nbytes + 255) // 256 * 256
        self.tag = f"{tag}/{','.join(map(str, self.ranks))}"
        self.timeout_s = ctx.timeout_s if timeout_s is None else timeout_s
        self.kind = "cuda_ipc" if ctx.device.type == "cuda" else "shm"
        self._next_offset = 0
        self._closed = False
        if self.kind == "cuda_ipc":
            self._open_cuda()
        else:
            self._open_shm()
        ctx.barrier(f"{self.tag}/ready", ranks=self.ranks)
        if self.kind == "shm" and self.rank == 0:
            os.unlink(self._path)  # every rank has it mapped now; nothing is left behind in /dev/shm

    # -- setup -----------------------------------------------------------------------------------------
    def _open_cuda(self):
        import ctypes

        from cuda.bindings import driver as cu

        torch.cuda.init()
        dev = self.ctx.device
        with torch.cuda.device(dev):
            torch.zeros(1, device=dev)  # makes torch's primary context current on this thread
            if not int(_cu_check(cu.cuCtxGetCurrent(), "cuCtxGetCurrent")):
                raise RuntimeError("PeerWorkspace: no current CUDA context after torch initialised the device")
            self._dptr = _cu_check(cu.cuMemAlloc(self.nbytes), "cuMemAlloc")
            self._base = int(self._dptr)
            _cu_check(cu.cuMemsetD8(self._dptr, 0, self.nbytes), "cuMemsetD8")
            _cu_check(cu.cuCtxSynchronize(), "cuCtxSynchronize")
            handle = _cu_check(cu.cuIpcGetMemHandle(self._dptr), "cuIpcGetMemHandle")
            raw = bytes((ctypes.c_char * 64).from_address(handle.getPtr()))
            handles = self.ctx.all_gather_object(raw, ranks=self.ranks, tag=f"{self.tag}/ipc")
            self._ptrs, self._opened = [], []
            for p, h in enumerate(handles):
                if p == self.rank:
                    self._ptrs.append(self._base)
                    continue
                hh = cu.CUipcMemHandle()
                ctypes.memmove(hh.getPtr(), h, 64)
                flags = int(cu.CUipcMem_flags.CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS)
                dptr = _cu_check(cu.cuIpcOpenMemHandle(hh, flags), f"cuIpcOpenMemHandle(rank {self.ranks[p]})")
                self._ptrs.append(int(dptr))
                self._opened.append(dptr)
        self._local = _wrap_device_bytes(self._base, self.nbytes, dev, owner=self)

    def _open_shm(self):
        import tempfile

        if self.rank == 0:
            fd, path = tempfile.mkstemp(prefix="wb_peer_", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
            os.ftruncate(fd, self.nbytes * self.world)
            os.close(fd)
            self.ctx.store.set(f"{self.tag}/shm", path)
        self.ctx.wait_keys({self.ranks[0]: f"{self.tag}/shm"}, "shared-memory workspace", self.timeout_s)
        self._path = self.ctx.store.get(f"{self.tag}/shm").decode()
        self._all = torch.from_file(self._path, shared=True, size=self.nbytes * self.world, dtype=torch.uint8)
        self._local = self._all[self.rank * self.nbytes:(self.rank + 1) * self.nbytes]

    # -- regions ---------------------------------------------------------------------------------------
    def alloc(self, nbytes: int) -> int:
        """Offset of a new region of `nbytes` (same offset on every rank)."""
        off = self._next_offset
        end = off + (int(nbytes) + 255) // 256 * 256
        if end > self.nbytes:
            raise InputError(f"PeerWorkspace.alloc: asked for {nbytes} bytes at offset {off}, the workspace holds "
                             f"{self.nbytes}; create it larger")
        self._next_offset = end
        return off

    def peer_ptr(self, p: int, offset: int = 0) -> int:
        """Device address (in this process) of rank p's buffer + offset (GPU only)."""
        return self._ptrs[p] + offset

    def peer_view(self, p: int, offset: int, nbytes: int) -> torch.Tensor:
        """uint8 view of rank p's region (CPU model only: on GPUs peers are reached from kernels)."""
        if self.kind != "shm":
            raise RuntimeError("peer_view: only the CPU model maps peer buffers as tensors")
        base = p * self.nbytes + offset
        return self._all[base:base + nbytes]

    def local_view(self, offset: int, nbytes: int) -> torch.Tensor:
        """uint8 tensor over this rank's own region (device memory on GPUs)."""
        return self._local[offset:offset + nbytes]

    def ptr_table(self, offset: int = 0) -> torch.Tensor:
        """int64 [world] on the device: every rank's buffer + offset, for kernels."""
        return torch.tensor([self.peer_ptr(p, offset) for p in range(self.world)], dtype=torch.int64,
                            device=self.ctx.device)

    def close(self):
        """Unmap peers, then (after a barrier, so no peer still maps ours) free our buffer."""
        if self._closed:
            return
        self._closed = True
        if self.kind == "cuda_ipc":
            from cuda.bindings import driver as cu

            torch.cuda.synchronize(self.ctx.device)
            for ptr in self._opened:
                cu.cuIpcCloseMemHandle(ptr)
            self.ctx.barrier(f"{self.tag}/closed", ranks=self.ranks)
            cu.cuMemFree(self._dptr)
        else:
            self.ctx.barrier(f"{self.tag}/closed", ranks=self.ranks)


def _wrap_device_bytes(ptr: int, nbytes: int, device: torch.device, owner) -> torch.Tensor:
    """A torch uint8 tensor over raw device memory (through CuPy's UnownedMemory and DLPack)."""
    import cupy

    mem = cupy.cuda.UnownedMemory(ptr, nbytes, owner, device_id=device.index)
    arr = cupy.ndarray((nbytes,), dtype=cupy.uint8, memptr=cupy.cuda.MemoryPointer(mem, 0))
    return torch.from_dlpack(arr)


def decode_peer_error(code: int) -> tuple[str, int, int]:
    """(kind, block, peer) of a kernel error word (kernels/peer.cu error_code)."""
    kinds = {1: "peer barrier", 2: "peer all-gather", 3: "peer argmax exchange"}
    return kinds.get(code >> 28, f"peer kernel (kind {code >> 28})"), (code >> 8) & 0xFFFFF, code & 0xFF


class _PeerOp:
    """Shared parts of the peer collectives: counters, error word, timeout, CPU spin-wait."""

    def __init__(self, ws: PeerWorkspace, nblocks: int, timeout_s: float | None):
        self.ws, self.rank, self.world = ws, ws.rank, ws.world
        self.nblocks = int(nblocks)
        self.timeout_s = ws.timeout_s if timeout_s is None else float(timeout_s)
        dev = ws.ctx.device
        self.counters = torch.zeros(self.nblocks, dtype=torch.int32, device=dev)  # this rank's step per block
        self.error = torch.zeros(1, dtype=torch.int32, device=dev)
        self.broken: PeerTimeoutError | None = None

    @property
    def timeout_ns(self):
        import numpy as np

        return np.uint64(int(self.timeout_s * 1e9))

    def check(self) -> None:
        """Raise PeerTimeoutError if a kernel of this op timed out (synchronizes the device on GPUs)."""
        if self.broken is not None:
            raise self.broken
        code = int(self.error.item())
        if code:
            what, block, peer = decode_peer_error(code)
            self.broken = PeerTimeoutError(self.ws.ranks[self.rank], self.ws.ranks[peer],
                                           f"{what} (block {block})", self.timeout_s)
            raise self.broken

    # CPU model helpers --------------------------------------------------------------------------------
    def _cpu_next_step(self, block: int = 0) -> int:
        self.counters[block] += 1
        return int(self.counters[block])

    def _cpu_wait(self, flag_view: torch.Tensor, step: int, peer: int, what: str) -> None:
        """Spin on a shared int32 flag until it reaches `step`; raise naming the peer past the timeout."""
        deadline = time.monotonic() + self.timeout_s
        spins = 0
        while True:
            v = int(flag_view[0])
            if ((v - step) & 0xFFFFFFFF) < 0x80000000:  # wrap-safe v >= step
                return
            spins += 1
            if spins > 64:
                time.sleep(20e-6)
            if time.monotonic() > deadline:
                self.broken = PeerTimeoutError(self.ws.ranks[self.rank], self.ws.ranks[peer], what, self.timeout_s)
                raise self.broken


def _as_i32(view_u8: torch.Tensor) -> torch.Tensor:
    return view_u8.view(torch.int32)


class PeerBarrier(_PeerOp):
    """Device-side barrier of the group (GPU: kernels/peer.cu peer_barrier on the current stream)."""

    def __init__(self, ws: PeerWorkspace, timeout_s: float | None = None):
        super().__init__(ws, 1, timeout_s)
        self.offset = ws.alloc(4 * self.world)
        if ws.kind == "cuda_ipc":
            self.ptrs = ws.ptr_table(self.offset)

    def __call__(self) -> None:
        if self.broken is not None:
            raise self.broken
        if self.ws.kind == "cuda_ipc":
            from . import get_kernel, launch

            launch(get_kernel("peer", "peer_barrier"), 1, 32,
                   (self.ptrs, self.counters, self.rank, self.world, self.timeout_ns, self.error))
            return
        step = self._cpu_next_step()
        for p in range(self.world):
            _as_i32(self.ws.peer_view(p, self.offset, 4 * self.world))[self.rank] = step
        mine = _as_i32(self.ws.local_view(self.offset, 4 * self.world))
        for p in range(self.world):
            self._cpu_wait(mine[p:p + 1], step, p, "peer barrier")


class PeerAllGather(_PeerOp):
    """All-gather of up to `max_bytes` per rank over peer buffers (kernels/peer.cu peer_allgather_v1).

    Usage: `out = ag(x)` with x [rows, ...] contiguous (any dtype, a multiple of 16 bytes); out is
    [world*rows, ...] in group-rank order. `nblocks` CTAs move the data (each owns one chunk and one flag per
    peer); every rank must use the same op object for the same sequence of calls. Graph-safe: the step
    counter lives on the device.
    """

    def __init__(self, ws: PeerWorkspace, max_bytes: int, nblocks: int = 32, threads: int = 512,
                 timeout_s: float | None = None):
        super().__init__(ws, nblocks if ws.kind == "cuda_ipc" else 1, timeout_s)
        if max_bytes % 16:
            raise InputError(f"max_bytes: expected a multiple of 16, got {max_bytes}")
        self.max_bytes, self.threads = int(max_bytes), int(threads)
        self.flag_bytes = (4 * self.world * self.nblocks + 255) // 256 * 256
        self.offset = ws.alloc(self.flag_bytes + 2 * self.world * self.max_bytes)
        if ws.kind == "cuda_ipc":
            self.ptrs = ws.ptr_table(self.offset)

    def _check_input(self, x: torch.Tensor):
        check_tensor("x", x, device=self.ws.ctx.device.type, contiguous=True, align_bytes=16)
        nbytes = x.numel() * x.element_size()
        if nbytes % 16 or nbytes > self.max_bytes:
            raise InputError(f"x: expected a multiple of 16 bytes up to max_bytes={self.max_bytes}, got {nbytes} "
                             f"bytes (shape {list(x.shape)}, {x.dtype})")
        return nbytes

    def __call__(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if self.broken is not None:
            raise self.broken
        nbytes = self._check_input(x)
        out_shape = (self.world * x.shape[0], *x.shape[1:]) if x.dim() else (self.world,)
        if out is None:
            out = torch.empty(out_shape, dtype=x.dtype, device=x.device)
        else:
            check_tensor("out", out, dtype=x.dtype, device=x.device.type, shape=out_shape, contiguous=True,
                         align_bytes=16)
        if self.ws.kind == "cuda_ipc":
            return self._gpu(x, out, nbytes)
        return self._cpu(x, out, nbytes)

    def _gpu(self, x, out, nbytes):
        import numpy as np

        from . import get_kernel, launch

        n_vec = nbytes // 16
        launch(get_kernel("peer", "peer_allgather_v1"), self.nblocks, self.threads,
               (x, out, self.ptrs, self.counters, self.rank, self.world,
                np.int64(n_vec), np.int64(self.max_bytes // 16), np.int64(self.flag_bytes), self.timeout_ns,
                self.error))
        return out

    def _cpu(self, x, out, nbytes):
        step = self._cpu_next_step()
        parity = step & 1
        src = x.reshape(-1).view(torch.uint8)
        data_at = self.flag_bytes + parity * self.world * self.max_bytes + self.rank * nbytes
        for p in range(self.world):  # push our shard into every rank's receive buffer (ours too)
            self.ws.peer_view(p, self.offset + data_at, nbytes).copy_(src)
        for p in range(self.world):  # x86 keeps store order: the flag is seen after the data
            if p != self.rank:
                _as_i32(self.ws.peer_view(p, self.offset, self.flag_bytes))[self.rank * self.nblocks] = step
        flags = _as_i32(self.ws.local_view(self.offset, self.flag_bytes))
        for p in range(self.world):
            if p != self.rank:
                i = p * self.nblocks
                self._cpu_wait(flags[i:i + 1], step, p, "peer all-gather (block 0)")
        recv_at = self.offset + self.flag_bytes + parity * self.world * self.max_bytes
        gathered = self.ws.local_view(recv_at, self.world * nbytes)
        out.reshape(-1).view(torch.uint8).copy_(gathered)
        return out


class PeerArgmaxPick(_PeerOp):
    """Distributed argmax of a vocabulary-split LM head (kernels/peer.cu peer_argmax_pick_v1).

    Rank r holds, for every row of the TP group's gathered batch ([world*rows]), its local max `vals` (fp32)
    and local argmax `idx` (int64, within its vocabulary slice starting at `vocab_offset`). Returns int32
    ids [rows] for r's own rows: the largest value over ranks, ties to the lowest rank (= lowest id).
    """

    def __init__(self, ws: PeerWorkspace, max_rows: int, timeout_s: float | None = None):
        super().__init__(ws, 1, timeout_s)
        self.max_rows = int(max_rows)
        self.flag_bytes = 256 if self.world <= 64 else (4 * self.world + 255) // 256 * 256
        self.offset = ws.alloc(self.flag_bytes + 2 * self.world * self.max_rows * 8)
        if ws.kind == "cuda_ipc":
            self.ptrs = ws.ptr_table(self.offset)

    def __call__(self, vals: torch.Tensor, idx: torch.Tensor, vocab_offset: int, ids: torch.Tensor | None = None):
        if self.broken is not None:
            raise self.broken
        dev = self.ws.ctx.device.type
        check_tensor("vals", vals, dtype=torch.float32, device=dev, ndim=1, contiguous=True)
        check_tensor("idx", idx, dtype=torch.int64, device=dev, shape=[vals.numel()], contiguous=True)
        if vals.numel() % self.world or vals.numel() // self.world > self.max_rows:
            raise InputError(f"vals: expected world*rows entries with rows <= {self.max_rows} (world {self.world}), "
                             f"got {vals.numel()}")
        rows = vals.numel() // self.world
        if ids is None:
            ids = torch.empty(rows, dtype=torch.int32, device=vals.device)
        check_tensor("ids", ids, dtype=torch.int32, device=dev, shape=[rows], contiguous=True)
        if self.ws.kind == "cuda_ipc":
            import numpy as np

            from . import get_kernel, launch

            launch(get_kernel("peer", "peer_argmax_pick_v1"), 1, 256,
                   (vals, idx, np.int64(vocab_offset), ids, self.ptrs, self.counters, self.rank, self.world, rows,
                    self.max_rows, np.int64(self.flag_bytes), self.timeout_ns, self.error))
            return ids
        step = self._cpu_next_step()
        parity = step & 1
        pairs = torch.stack([vals, (idx + vocab_offset).to(torch.float32)], dim=1)  # ids < 2^24: exact in fp32
        slot = self.max_rows * 8
        base = self.flag_bytes + parity * self.world * slot
        for q in range(self.world):
            dst = self.ws.peer_view(q, self.offset + base + self.rank * slot, rows * 8).view(torch.float32)
            dst.copy_(pairs[q * rows:(q + 1) * rows].reshape(-1))
        for q in range(self.world):
            if q != self.rank:
                _as_i32(self.ws.peer_view(q, self.offset, self.flag_bytes))[self.rank] = step
        flags = _as_i32(self.ws.local_view(self.offset, self.flag_bytes))
        for q in range(self.world):
            if q != self.rank:
                self._cpu_wait(flags[q:q + 1], step, q, "peer argmax exchange")
        recv = self.ws.local_view(self.offset + base, self.world * slot).view(torch.float32)
        recv = recv.view(self.world, self.max_rows, 2)[:, :rows]
        best = recv[:, :, 0].argmax(dim=0)  # first maximum: the lowest source rank on ties
        ids.copy_(recv[:, :, 1].gather(0, best[None]).squeeze(0).to(torch.int32))
        return ids
