"""Run a CPU plan for real (issue 13, Deliver 3): every stage's model compiled with TVM as one
Relax module (:mod:`codesign.cost_models.tvm_stage`, random weights of the plan's shapes), the
funnel with top-k between stages, each stage's engines as forked processes (or threads) pinned
to cores, each with its own VM, and an open-loop Poisson load that records every query's
latency. The measured p50/p95/p99, throughput and per-stage service times are reported beside
the evaluator's prediction at the same load.

Only plans whose every stage runs on ``cpu/host`` (this machine) can be run. TVM's thread pool
is sized once per process, to the plan's largest ``cores`` per engine.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import queue
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from codesign.plan import Plan, PlanError, evaluate_plan

HOST = "cpu/host"
#: Quantiles kept of a stage's measured service distribution (its shape, see
#: :meth:`StageRun.service_quantiles`).
SPREAD_POINTS = 41
#: Simulated queries behind the prediction a run is compared with (a p95 within about +-2 %,
#: against +-13 % at 500).
PREDICT_QUERIES = 20_000
#: Edges (seconds) of the bins of how long an engine waited for a query: the first bin holds
#: the queries that found it busy (gap 0).
GAP_EDGES_S = np.array([0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1])


@dataclass
class StageRun:
    name: str
    model: str
    items: int
    keep: int
    engines: int
    batch_items: int
    calls: int = 0
    busy_s: float = 0.0
    compile_s: float = 0.0
    #: Each measured query's service: from the moment it could start (it reached the stage
    #: and the engine was free) to the moment its top-k was handed on, so the engine's wake-up
    #: and the hand-off count, as a server's occupancy does in the queueing simulator.
    service_s: list[float] = field(default_factory=list, repr=False)
    #: Per measured query: how long its engine had been waiting when it reached the stage
    #: (0 when the engine was busy with another query).
    idle_gap_s: list[float] = field(default_factory=list, repr=False)

    @property
    def found_idle(self) -> list[bool]:
        return [g > 0 for g in self.idle_gap_s]

    @property
    def mean_service_s(self) -> float:
        if self.service_s:
            return float(np.mean(self.service_s))
        return self.busy_s / self.calls if self.calls else math.nan

    @property
    def idle_fraction(self) -> float:
        return float(np.mean(self.found_idle)) if self.found_idle else math.nan

    def _bins(self) -> np.ndarray:
        """Each measured query's gap bin (:data:`GAP_EDGES_S`; 0: the engine was busy)."""
        return np.searchsorted(GAP_EDGES_S, np.asarray(self.idle_gap_s), side="left")

    def gap_profile(self) -> list[list[float]]:
        """Mean service by how long the engine had been waiting: ``[mean gap, mean service,
        queries]`` per non-empty bin of :data:`GAP_EDGES_S` (the first: queries that found
        it busy, gap 0): how much slower a query runs the longer its engine slept (kept with
        the run and the calibration samples, for diagnosis)."""
        if not self.service_s:
            return []
        s, g, b = np.asarray(self.service_s), np.asarray(self.idle_gap_s), self._bins()
        return [
            [float(g[b == k].mean()), float(s[b == k].mean()), int((b == k).sum())]
            for k in np.unique(b)
        ]

    def service_quantiles(self, points: int = SPREAD_POINTS) -> list[float]:
        """The measured service's quantiles at ``points`` even probabilities
        (:func:`codesign.cost_models.calibration.spread_probabilities`), divided by its mean:
        its shape, whatever its scale."""
        if not self.service_s:
            return []
        s = np.asarray(self.service_s)
        from codesign.cost_models.calibration import spread_probabilities

        return (np.quantile(s, spread_probabilities(points)) / s.mean()).tolist()


@dataclass
class RunResult:
    """What ``plan run`` measured, beside the prediction at the same load."""

    qps: float
    duration_s: float
    offered: int
    completed: int
    measured_after_warmup: int
    throughput_qps: float
    p50_latency_s: float
    p95_latency_s: float
    p99_latency_s: float
    stages: list[StageRun] = field(default_factory=list)
    predicted: dict[str, float] = field(default_factory=dict)
    predicted_stage_service_s: list[float] = field(default_factory=list)
    #: The core each engine thread was pinned to, stage by stage (None: not pinned).
    engine_cores: list[int | None] = field(default_factory=list)
    #: CPU time the load generator's process spent per query while the load ran (generating
    #: arrivals, handing queries to stage 1; with --threads, the engines' time too).
    frontend_cpu_s_per_query: float = math.nan
    #: How late the load generator sent the measured queries after their arrival times
    #: (p50, p99, max): a late query is still timed from its arrival, so a generator that
    #: falls behind shows here, not as a faster deployment.
    send_late_s: dict[str, float] = field(default_factory=dict)
    #: CPU time the hypervisor took from this machine's CPUs while the load ran (steal, summed
    #: over the CPUs; NaN where unknown): a host that pauses the machine stretches queries
    #: that no model of the machine itself predicts.
    host_steal_s: float = math.nan
    #: The generator's stalls over the measured queries (:func:`send_stalls`): ``count`` and
    #: ``total_s``; on this machine they were the hypervisor's pauses.
    send_stalls: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stages"] = [
            {
                **{k: v for k, v in asdict(s).items() if k not in ("service_s", "idle_gap_s")},
                "measured_queries": len(s.service_s),
                "idle_fraction": s.idle_fraction,
                "gap_profile": s.gap_profile(),
                "mean_service_s": s.mean_service_s,
                "service_quantiles": s.service_quantiles(),
            }
            for s in self.stages
        ]
        out["relative_error"] = {
            k: (getattr(self, k) - self.predicted[k]) / self.predicted[k]
            for k in ("p50_latency_s", "p95_latency_s", "p99_latency_s")
            if self.predicted.get(k)
        }
        return out


#: How late (seconds) the generator must send a query for it to count in a stall.
STALL_S = 5e-3


def send_stalls(arrivals_s: np.ndarray, late_s: np.ndarray) -> dict[str, float]:
    """The stretches in which the load generator sent queries more than :data:`STALL_S` late:
    queries so late whose arrivals are within :data:`STALL_S` of the previous one's send
    belong to one stall, as long as its first query waited (the generator, stopped, sends
    everything that arrived meanwhile at once). ``count`` and ``total_s``."""
    arrivals_s, late_s = np.asarray(arrivals_s, float), np.asarray(late_s, float)
    idx = np.flatnonzero(late_s > STALL_S)
    if idx.size == 0:
        return {"count": 0, "total_s": 0.0}
    sent = arrivals_s[idx] + late_s[idx]
    # a new stall starts where a late query arrived after the one before it was sent
    starts = np.concatenate([[True], arrivals_s[idx[1:]] > sent[:-1] + STALL_S])
    lengths = np.maximum.reduceat(late_s[idx], np.flatnonzero(starts))
    return {"count": int(lengths.size), "total_s": float(lengths.sum())}


def host_steal_s() -> float:
    """Seconds of CPU the hypervisor has taken from this machine since boot (``steal`` in
    ``/proc/stat``, all CPUs; NaN where not available)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return math.nan


def check_runnable(plan: Plan) -> None:
    """One line naming the stage and the reason when ``plan`` cannot run on this machine."""
    for st in plan.design["stages"]:
        if st["target"] != HOST:
            raise PlanError(
                f"plan of trial {plan.trial}: stage {st['name']} runs on {st['target']}, and "
                f"`plan run` executes {HOST} plans only (fix: search with targets = "
                f'["{HOST}"] to get a plan for this machine)'
            )


#: Alignment (bytes) TVM asks of a tensor's data (``Tensor::FromDLPack``).
TENSOR_ALIGN = 64


def _aligned(groups: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A (``groups``, *``shape``) array whose every ``[g]`` starts on a :data:`TENSOR_ALIGN`
    boundary (rows padded to it), so that each can be handed to TVM without a copy."""
    dtype = np.dtype(dtype)
    per = int(np.prod(shape)) * dtype.itemsize
    stride = -(-per // TENSOR_ALIGN) * TENSOR_ALIGN
    raw = np.zeros(groups * stride + TENSOR_ALIGN, np.uint8)
    base = (-raw.ctypes.data) % TENSOR_ALIGN
    rows = raw[base : base + groups * stride].reshape(groups, stride)[:, :per]
    return rows.view(dtype).reshape(groups, *shape)


class _Stage:
    """One compiled stage: its executable and weights, and the inputs of its whole candidate
    pool, packed by shape and type (one (inputs, pool, ...) array per kind) so that an
    engine gathers a batch's every input with one ``np.take`` per kind
    (:meth:`bind`)."""

    def __init__(self, st: Mapping, pool: int, seed: int) -> None:
        from codesign.cost_models import tvm_measured as tm
        from codesign.cost_models import tvm_stage
        from codesign.ir.frontends.lower import lower

        batch = int(st.get("batch") or 0) or int(st["items"])
        self.run = StageRun(
            st["name"], st["model"], int(st["items"]), int(st["keep"]), int(st["engines"]), batch
        )
        graph = lower(st["model"], batch=batch)
        specs = tvm_stage.kernel_specs(graph)
        arrays = tvm_stage.stage_arrays(graph, specs, seed=seed)
        names = tvm_stage.argument_names(graph, arrays)
        inputs = [n.name for n in graph.nodes if n.op == "input" and n.name in arrays]
        # the features of every candidate the funnel may pass to this stage
        big = lower(st["model"], batch=pool)
        features = tvm_stage.stage_arrays(big, tvm_stage.kernel_specs(big), seed=seed + 1)
        #: input kinds: (row shape, dtype) -> the inputs of that kind, in argument order
        self.kinds: dict[tuple[tuple[int, ...], str], list[str]] = {}
        for n in inputs:
            self.kinds.setdefault((features[n].shape[1:], features[n].dtype.str), []).append(n)
        self.packed = {
            kind: np.stack([features[n] for n in group]) for kind, group in self.kinds.items()
        }
        self.inputs = inputs
        start = time.perf_counter()
        self.exe = tvm_stage.build_stage(graph, arrays)
        self.run.compile_s = time.perf_counter() - start
        tvm = tm._tvm()
        self.tvm = tvm
        self.dev = tvm.cpu(0)
        self.weights = [tvm.runtime.tensor(arrays[n], self.dev) for n in names if n not in inputs]

    def bind(self) -> Callable[[np.ndarray], np.ndarray]:
        """An engine's scorer (its own VM and input buffers): the scores of ``candidates``
        (indices into the pool), batch by batch. Each batch's inputs are gathered into
        buffers the VM's input tensors share (DLPack, no copy), so a batch costs one
        ``np.take`` per input kind and the call."""
        b = self.run.batch_items
        vm = self.tvm.relax.VirtualMachine(self.exe, self.dev)
        main = vm["main"]
        buffers = {
            kind: _aligned(len(group), (b, *kind[0]), np.dtype(kind[1]))
            for kind, group in self.kinds.items()
        }
        tensor_of = {
            n: self.tvm.runtime.from_dlpack(buffers[kind][g])
            for kind, group in self.kinds.items()
            for g, n in enumerate(group)
        }
        args = [tensor_of[n] for n in self.inputs] + self.weights
        packed = self.packed

        def score(candidates: np.ndarray) -> np.ndarray:
            out = []
            for lo in range(0, len(candidates), b):
                idx = candidates[lo : lo + b]
                pad = b - len(idx)
                if pad:
                    idx = np.concatenate([idx, np.repeat(idx[-1:], pad)])
                for kind, buf in buffers.items():
                    np.take(packed[kind], idx, axis=1, out=buf, mode="clip")
                scores = main(*args).numpy().reshape(b, -1)[:, 0]
                out.append(scores[: b - pad])
            return np.concatenate(out) if len(out) > 1 else out[0]

        return score


#: A record's header: the query (-1: stop), the time it reached the stage; its candidates'
#: indices follow as int32.
_RECORD_HEADER = struct.Struct("<qd")


class _RecordQueue:
    """A queue between processes of fixed-size records (query, the time it reached the stage,
    its candidates), on a bare pipe: a put is one ``write`` and a get one ``read`` of a
    record's bytes, with no pickling and no lock where a record fits ``PIPE_BUF`` (the kernel
    then writes and reads it whole, whichever of the stage's engines reads it); larger ones
    take a lock per side. ``items``: candidates per record (0: none, the whole pool). The generic
    queues cost a lock hand-off between a stage's engines per query (the waiting engine woken
    each time) that a pool of servers with one queue does not have."""

    #: F_SETPIPE_SZ: room for the queued records of an overloaded stage
    PIPE_BYTES = 1 << 20

    def __init__(self, items: int, ctx: Any) -> None:
        import fcntl
        import select

        self.items = items
        self.size = _RECORD_HEADER.size + 4 * items
        self.read_fd, self.write_fd = os.pipe()
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(self.write_fd, fcntl.F_SETPIPE_SZ, self.PIPE_BYTES)
        # one lock per side: a reader waits for data holding its lock, so a writer must not
        # need that one
        whole = self.size <= select.PIPE_BUF
        self.read_lock = None if whole else ctx.Lock()
        self.write_lock = None if whole else ctx.Lock()

    def put(self, item: tuple[int, np.ndarray | None, float] | None) -> None:
        if item is None:
            buf = _RECORD_HEADER.pack(-1, 0.0) + bytes(4 * self.items)
        else:
            qid, candidates, reached = item
            body = np.asarray(candidates, np.int32).tobytes() if self.items else b""
            buf = _RECORD_HEADER.pack(qid, reached) + body
        with self.write_lock or contextlib.nullcontext():
            view = memoryview(buf)
            while view:
                view = view[os.write(self.write_fd, view) :]

    def get(self) -> tuple[int, np.ndarray | None, float] | None:
        with self.read_lock or contextlib.nullcontext():
            buf = os.read(self.read_fd, self.size)
            while len(buf) < self.size:
                buf += os.read(self.read_fd, self.size - len(buf))
        qid, reached = _RECORD_HEADER.unpack_from(buf)
        if qid < 0:
            return None
        candidates = (
            np.frombuffer(buf, np.int32, self.items, _RECORD_HEADER.size).astype(np.int64)
            if self.items
            else None
        )
        return qid, candidates, reached

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def _engine(
    stage: _Stage,
    k: int,
    core: int | None,
    inbox: Any,
    outbox: Any | None,
    *,
    done: Any,
    report: Callable[[list[tuple[int, int, float, float, float, float]]], None],
) -> None:
    """One engine of stage ``k`` (a thread or a forked process): takes (query, candidates,
    reached) from ``inbox`` until ``None`` (candidates ``None``: the whole stage-1 pool),
    scores the candidates, keeps the top ``keep`` and hands them to ``outbox``, or counts the
    query in ``done`` (a shared counter) at the last stage. It keeps (stage, query, began,
    left, busy, gap) per query and reports them all once, at the end, so that the load
    generator's process does no per-query bookkeeping. A query begins when it reached the
    stage or when this engine freed up, whichever is later; ``gap``: how long the engine had
    been waiting for it (<= 0: the engine was busy)."""
    if core is not None:
        os.sched_setaffinity(0, {core})  # this thread or process only (Linux)
    score = stage.bind()
    keep = stage.run.keep
    pool = np.arange(stage.run.items)
    free_at = 0.0  # when this engine finished its last query
    records = []
    while (item := inbox.get()) is not None:
        qid, candidates, reached = item
        if candidates is None:
            candidates = pool
        start = time.perf_counter()
        scores = score(candidates)
        if keep < len(candidates):
            top = np.argpartition(-scores, keep - 1)[:keep]
            kept = candidates[top[np.argsort(-scores[top])]]
        else:
            kept = candidates[np.argsort(-scores)]
        end = time.perf_counter()
        if outbox is not None:
            outbox.put((qid, kept, end))
        else:
            with done.get_lock():
                done.value += 1
        records.append((k, qid, max(reached, free_at), end, end - start, reached - free_at))
        free_at = end
    report(records)


#: The load generator's timer slack (ns; Linux ``PR_SET_TIMERSLACK``): the default, 50 us,
#: made every sleep to the next arrival end 70-80 us late on this machine, against 20-30 us
#: at 1 us.
TIMER_SLACK_NS = 1000


@contextlib.contextmanager
def _fine_timer_slack() -> Iterator[None]:
    """The calling thread's timer slack at :data:`TIMER_SLACK_NS` while the load is offered
    (Linux; a no-op elsewhere), so that queries are sent on time."""
    import ctypes
    import sys

    set_slack, get_slack = 29, 30  # PR_SET_TIMERSLACK, PR_GET_TIMERSLACK
    prctl = None
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            prctl = ctypes.CDLL(None, use_errno=True).prctl
    before = prctl(get_slack, 0, 0, 0, 0) if prctl else -1
    if prctl and before > 0:
        prctl(set_slack, TIMER_SLACK_NS, 0, 0, 0)
    try:
        yield
    finally:
        if prctl and before > 0:
            prctl(set_slack, before, 0, 0, 0)


@contextlib.contextmanager
def _quiet_gc() -> Iterator[None]:
    """No garbage-collector pauses while load is offered: a full collection of a process that
    holds earlier runs' records stops the load generator (every query it then sends late is
    counted late) and the forked engines; and the objects alive before the fork are frozen,
    so the engines do not copy the parent's pages as collections touch them (``gc.freeze``,
    as Python's documentation advises before ``fork``)."""
    enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()


def run_plan(
    plan: Plan,
    *,
    qps: float,
    duration_s: float,
    warmup_s: float = 1.0,
    seed: int = 0,
    status: Callable[[str], None] | None = None,
    cost_model: str | None = None,
    pin: bool = True,
    processes: bool = True,
) -> RunResult:
    """Execute ``plan`` on this machine under a Poisson load of ``qps`` for ``duration_s``
    seconds (queries arriving in the first ``warmup_s`` are not measured) and measure it,
    beside the prediction at that load (with ``cost_model``, default the plan's). With ``pin``
    each one-thread engine is pinned to a core (round robin over this process's cores). With
    ``processes`` (the default) each engine is a forked process (no GIL shared with the load
    generator or the other engines; queries and reports cross process queues), else a
    thread: threads share the GIL, which on 2 cores made the p95 service 3x the processes'."""
    from codesign.cost_models import tvm_measured as tm

    check_runnable(plan)
    say = status or (lambda _: None)
    stages_spec = plan.design["stages"]
    points = plan.resolved["stages"]
    cores = max(int(p["point"].get("cores", 1)) for p in points)
    pool = int(stages_spec[0]["items"])
    with tm.pinned_threads(cores), contextlib.ExitStack() as stack:
        stages = []
        for i, st in enumerate(stages_spec):
            say(f"compiling {st['name']} ({st['model']}, batch {st.get('batch') or st['items']})")
            stages.append(_Stage(st, pool, seed + 10 * i))
        n_max = int(qps * duration_s * 1.5 + 100)
        # every stage of every query, as engines report it at the end:
        # (stage, query, began, left, busy, gap)
        records: list[tuple[int, int, float, float, float, float]] = []
        last = len(stages) - 1
        lock = threading.Lock()

        def note(recs: list[tuple[int, int, float, float, float, float]]) -> None:
            with lock:
                records.extend(recs)

        # warm each VM once (first-call costs are not service)
        for stage in stages:
            stage.bind()(np.arange(min(pool, stage.run.items)))
        owners = [k for k, stage in enumerate(stages) for _ in range(stage.run.engines)]
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        stack.enter_context(_quiet_gc())
        # one-thread engines each get a core, round robin; engines with a TVM thread pool of
        # their own keep the process's cores for it
        cores_of = [
            cpus[j % len(cpus)] if pin and cpus and cores == 1 else None for j in range(len(owners))
        ]
        if processes:
            import multiprocessing

            mp = multiprocessing.get_context("fork")
            # stage k > 0 receives the top keep of stage k - 1
            queues: list[Any] = [
                _RecordQueue(0 if k == 0 else stage.run.items, mp) for k, stage in enumerate(stages)
            ]
            stack.callback(lambda: [q.close() for q in queues])
            results = mp.Queue()
            finished = mp.Value("q", 0)
            workers: list[Any] = [
                mp.Process(
                    target=_engine,
                    args=(stages[k], k, core, queues[k], queues[k + 1] if k < last else None),
                    kwargs={"report": results.put, "done": finished},
                    daemon=True,
                )
                for k, core in zip(owners, cores_of, strict=True)
            ]
        else:
            import multiprocessing

            queues = [queue.Queue() for _ in stages]
            finished = multiprocessing.Value("q", 0)
            workers = [
                threading.Thread(
                    target=_engine,
                    args=(stages[k], k, core, queues[k], queues[k + 1] if k < last else None),
                    kwargs={"report": note, "done": finished},
                    daemon=True,
                )
                for k, core in zip(owners, cores_of, strict=True)
            ]
        for w in workers:
            w.start()
        rng = np.random.default_rng(seed)
        say(f"offering {qps:g} QPS for {duration_s:g} s")
        cpu_start = time.process_time()
        steal_start = host_steal_s()
        start = time.perf_counter()
        arrivals = []
        late = []
        t_next = 0.0
        stack.enter_context(_fine_timer_slack())
        while t_next < duration_s and len(arrivals) < n_max:
            delay = start + t_next - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            arrivals.append(start + t_next)
            now = time.perf_counter()
            late.append(now - arrivals[-1])
            # the query reaches stage 1 at its arrival, or when the generator (late) puts it
            queues[0].put((len(arrivals) - 1, None, max(arrivals[-1], now)))
            t_next += rng.exponential(1.0 / qps)
        deadline = time.perf_counter() + max(30.0, 5 * duration_s)
        while finished.value < len(arrivals) and time.perf_counter() < deadline:
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        frontend_cpu_s = time.process_time() - cpu_start
        stolen_s = host_steal_s() - steal_start
        for k, stage in enumerate(stages):
            for _ in range(stage.run.engines):
                queues[k].put(None)
        if processes:
            # read every engine's records before joining it (a process holding queued data
            # does not exit until it is read)
            for _ in workers:
                try:
                    note(results.get(timeout=30))
                except queue.Empty:
                    break
            for w in workers:
                w.join(timeout=10)
                if w.is_alive():
                    w.terminate()
        else:
            for w in workers:
                w.join(timeout=30)
    n = len(arrivals)
    began = np.full((len(stages), n), math.nan)
    left = np.full((len(stages), n), math.nan)
    gap = np.zeros((len(stages), n))
    for k, qid, b, e, busy, waited in records:
        began[k, qid], left[k, qid], gap[k, qid] = b, e, max(0.0, waited)
        stages[k].run.calls += 1
        stages[k].run.busy_s += busy
    arrived = np.asarray(arrivals)
    out_s = left[-1]
    counted = (arrived - start >= warmup_s) & np.isfinite(out_s)
    measured = (out_s - arrived)[counted]
    for k, stage in enumerate(stages):
        stage.run.service_s = (left[k] - began[k])[counted].tolist()
        stage.run.idle_gap_s = gap[k][counted].tolist()
    if measured.size == 0:
        raise PlanError(
            f"no query completed after the {warmup_s:g} s warm-up (fix: a longer --duration "
            "or a lower --qps)"
        )
    predicted = evaluate_plan(plan, qps=qps, cost_model=cost_model, queries=PREDICT_QUERIES)
    return RunResult(
        qps=qps,
        duration_s=elapsed,
        offered=n,
        completed=int(np.isfinite(out_s).sum()),
        measured_after_warmup=int(measured.size),
        throughput_qps=int(np.isfinite(out_s).sum()) / elapsed,
        p50_latency_s=float(np.percentile(measured, 50)),
        p95_latency_s=float(np.percentile(measured, 95)),
        p99_latency_s=float(np.percentile(measured, 99)),
        stages=[s.run for s in stages],
        predicted=predicted.as_dict(),
        predicted_stage_service_s=[p.service_s_full_query for p in predicted.pools],
        engine_cores=cores_of,
        frontend_cpu_s_per_query=frontend_cpu_s / max(1, n),
        host_steal_s=stolen_s,
        send_stalls=send_stalls(arrived[counted], np.asarray(late)[counted]),
        send_late_s=dict(
            zip(
                ("p50", "p99", "max"),
                np.percentile(np.asarray(late)[counted], [50, 99, 100]).tolist(),
                strict=True,
            )
        ),
    )


def host_cores_of(plan: Plan) -> tuple[int, int]:
    """(the host chip's cores, the cores the plan's engines take: engines x cores each)."""
    chip = plan.resolved["chips"].get(HOST, {})
    used = sum(
        int(st["engines"]) * int(st["point"].get("cores", 1))
        for st, spec in zip(plan.resolved["stages"], plan.design["stages"], strict=True)
        if spec["target"] == HOST
    )
    return int(chip.get("cores", os.cpu_count() or 1)), used


def close_loop(plan: Plan, result: RunResult) -> dict[str, Any]:
    """Fit the calibrated host model's per-batch stage overhead to what ``result`` measured
    (:func:`codesign.cost_models.calibration.fit_stage_overhead`, over every plan run recorded
    so far) and save it with the calibration, so that later calibrated predictions include it.
    Returns the fit. Needs a calibration (``codesign measure report``)."""
    from codesign.cost_models.calibration import (
        CALIBRATION_FILE,
        Calibration,
        fit_stage_overhead,
    )
    from codesign.cost_models.measure_db import default_path

    path = default_path().parent / CALIBRATION_FILE
    calibration = Calibration.load(path)
    predicted = evaluate_plan(plan, qps=result.qps, cost_model="calibrated")
    samples = list(calibration.stage_overhead.get("samples", []))
    host_cores, cores_used = host_cores_of(plan)
    for k, (stage, pool) in enumerate(zip(result.stages, predicted.pools, strict=True)):
        batches = math.ceil(stage.items / stage.batch_items)
        without = pool.service_s_full_query - batches * calibration.overhead_s(stage.batch_items)
        samples.append(
            {
                "model": stage.model,
                "items": stage.items,
                "batch_items": stage.batch_items,
                "batches": batches,
                "engines": stage.engines,
                "measured_s": stage.mean_service_s,
                "service_quantiles": stage.service_quantiles(),
                "idle_fraction": stage.idle_fraction,
                "gap_profile": stage.gap_profile(),
                "predicted_s": without,
                "qps": result.qps,
                # it hands its top-k on to another stage (a put on a process queue)
                "hands_off": k + 1 < len(result.stages),
                "frontend_cpu_s": result.frontend_cpu_s_per_query,
                "send_late_s": result.send_late_s.get("p50"),
                "host_cores": host_cores,
                "cores_used": cores_used,
                "run": plan.run,
                "trial": plan.trial,
            }
        )
    calibration.stage_overhead = fit_stage_overhead(samples)
    calibration.save(path)
    return calibration.stage_overhead
