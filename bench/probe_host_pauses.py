"""Does the hypervisor pause this machine, and under which load? (issue 13's plan runs.)

A load generator like ``plan run``'s (open-loop Poisson, one-microsecond timer slack) hands
queries through a pipe to two worker processes pinned to cores 0 and 1, which work on each for
``--busy-us`` microseconds. Per work mode, for ``--seconds`` each, it prints how late the
generator sent its queries (p50, p99, max), when it was over 5 ms late (a pause), and the CPU
time the hypervisor took from the machine meanwhile (steal, /proc/stat). Modes:

- ``gather``: both workers gather random 256-byte rows of a ``--array-mb`` array (as an
  embedding lookup does);
- ``gather-one``: only the worker on core 0 gathers, the other passes queries on;
- ``spin``: both spin on the clock (no memory traffic);
- ``stream``: both sum the same 512 KiB slice (cache-resident).

    python bench/probe_host_pauses.py

Measured here (2 vCPUs, AMD EPYC, Firecracker; nothing else running in this machine) on
2026-11-24, with an earlier version of this probe: from 04:00 to 04:10, at 4,300 queries per
second, ``gather`` gave 350-410 ms of steal in 8 s in three runs out of three, in pauses of
20-45 ms that stopped both vCPUs at once, in groups about 100 ms apart recurring about every
2.2 s; ``gather-one``, ``spin`` and ``stream`` gave none (max lateness 2-4 ms), and so did
``gather`` at 2,000 queries per second. At 04:50 ``gather`` gave none either: the pauses
come and go with the host's other work, so a quiet probe says only that the host is quiet
now.
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing
import os
import time

import numpy as np

MODES = ("gather", "gather-one", "spin", "stream")
PAUSE_S = 5e-3


def steal_s() -> float:
    with open("/proc/stat") as f:
        return int(f.readline().split()[8]) / os.sysconf("SC_CLK_TCK")


def worker(core: int, mode: str, busy_s: float, table: np.ndarray, inbox, outbox) -> None:
    os.sched_setaffinity(0, {core})
    rng = np.random.default_rng(core)
    gathers = mode == "gather" or (mode == "gather-one" and core == 0)
    while (msg := inbox.recv_bytes()) != b"stop":
        start = time.perf_counter()
        while time.perf_counter() - start < busy_s:
            if gathers:
                table[rng.integers(0, table.shape[0], 256)].sum()
            elif mode == "stream":
                table[:2048].sum()
        if outbox is not None:
            outbox.send_bytes(msg)


def probe(mode: str, qps: float, seconds: float, busy_s: float, table: np.ndarray) -> str:
    mp = multiprocessing.get_context("fork")
    (r0, w0), (r1, w1) = mp.Pipe(duplex=False), mp.Pipe(duplex=False)
    procs = [
        mp.Process(target=worker, args=(0, mode, busy_s, table, r0, w1), daemon=True),
        mp.Process(target=worker, args=(1, mode, busy_s, table, r1, None), daemon=True),
    ]
    for p in procs:
        p.start()
    time.sleep(0.5)
    rng = np.random.default_rng(0)
    stolen = steal_s()
    start = time.perf_counter()
    t, late, at = 0.0, [], []
    while t < seconds:
        delay = start + t - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        late.append(time.perf_counter() - start - t)
        at.append(t)
        w0.send_bytes(b"q")
        t += rng.exponential(1.0 / qps)
    stolen = steal_s() - stolen
    w0.send_bytes(b"stop")
    w1.send_bytes(b"stop")
    for p in procs:
        p.join(timeout=5)
    late_ms = np.asarray(late) * 1e3
    paused = np.unique(np.round(np.asarray(at)[late_ms > PAUSE_S * 1e3], 1))
    p50, p99, top = np.percentile(late_ms, [50, 99, 100])
    return (
        f"{mode:<11} late p50 {p50:6.3f} p99 {p99:7.3f} max {top:6.1f} ms  steal "
        f"{stolen * 1e3:5.0f} ms  pauses at {', '.join(f'{x:.1f}' for x in paused[:12]) or '-'} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qps", type=float, default=4300.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--busy-us", type=float, default=180.0)
    parser.add_argument("--array-mb", type=int, default=200)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs 2 cores")
    libc = ctypes.CDLL(None)
    libc.prctl(29, 1000, 0, 0, 0)  # PR_SET_TIMERSLACK: 1 us, as plan run's generator
    table = np.ones((args.array_mb * 2**20 // 256, 64), np.float32)
    for mode in args.modes.split(","):
        print(probe(mode, args.qps, args.seconds, args.busy_us * 1e-6, table), flush=True)


if __name__ == "__main__":
    main()
