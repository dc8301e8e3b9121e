"""Our TVM kernels against numpy, single thread: FC (dense + bias + relu) vs OpenBLAS
``np.matmul`` on MLP shapes (target >= 0.9x) and embedding-bag vs a numpy gather
``table[idx].sum(1)`` (target >= 3x).

Run ``python bench/bench_tvm.py`` (under a minute) or ``--quick`` (two shapes of each, fewer
rounds). numpy runs in a persistent worker process (TVM's thread pool can disturb OpenBLAS in
the same process) and TVM in this one, both pinned to one thread, and the two are timed
interleaved: for each shape, numpy's round r, then TVM's round r, then round r + 1, so a change
in the machine's load hits both sides alike. A round is one timed run of at least ``ROUND_S``
(numpy: a Python loop; TVM: ``time_evaluator``); each side keeps its best round. Both use the
same inputs (:func:`~codesign.cost_models.tvm_measured.random_inputs`). Prints one row per
shape: numpy's and TVM's time, GFLOP/s or GB/s, and the ratio (numpy time / TVM time). Not a
test: the machine is shared and the numbers are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

for _key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TVM_NUM_THREADS"):
    os.environ[_key] = "1"

import numpy as np  # noqa: E402

# (batch, in, out): DLRM RM1/RM2 bottom and top MLP layers at serving batch sizes
FC_SHAPES = [
    (256, 512, 256),
    (256, 256, 64),
    (256, 1024, 1024),
    (128, 288, 256),
    (512, 256, 128),
    (1024, 512, 256),
]
# (rows, dim, batch, pooling)
BAG_SHAPES = [
    (100_000, 64, 256, 32),
    (1_000_000, 64, 256, 32),
    (1_000_000, 64, 2048, 32),
    (1_000_000, 128, 2048, 80),
    (4_000_000, 32, 256, 80),
]
#: Minimum length of one timed round, per side.
ROUND_S = 0.05


def _specs(fc, bags) -> list:
    """The kernels, in timing order: FC shapes, then each bag shape as fixed-pooling and CSR."""
    from codesign.cost_models.tvm_measured import KernelSpec

    specs = [
        KernelSpec.make("dense", m=m, k=k, n=n, bias=True, activation="relu") for m, k, n in fc
    ]
    for rows, dim, batch, pooling in bags:
        for kind in ("embedding_bag", "embedding_bag_csr"):
            specs.append(
                KernelSpec.make(
                    kind, rows=rows, dim=dim, batch=batch, pooling=pooling, mode="sum", alpha=1.09
                )
            )
    return specs


def _numpy_fn(spec):
    """numpy's version of ``spec`` on its reproducible inputs (None: no numpy row)."""
    from codesign.cost_models.tvm_measured import random_inputs

    if spec.kind == "embedding_bag_csr":
        return None
    args = random_inputs(spec)
    if spec.kind == "embedding_bag":
        table, idx = args
        return lambda: table[idx].sum(axis=1)
    x, w, b = args
    y = np.empty((x.shape[0], w.shape[1]), np.float32)

    def fc() -> None:
        np.matmul(x, w, out=y)
        np.add(y, b, out=y)
        np.maximum(y, 0, out=y)

    return fc


def _round(fn) -> float:
    """Seconds per call over one round of at least ``ROUND_S``."""
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= ROUND_S:
            return elapsed / n


def numpy_worker() -> None:
    """The numpy side (its own process): reads the shapes as one JSON line, answers ``ready``,
    then for each line ``i`` times one round of kernel i and answers its seconds per call."""
    setup = json.loads(sys.stdin.readline())
    fns = [_numpy_fn(s) for s in _specs(setup["fc"], setup["bags"])]
    for fn in fns:
        if fn is not None:
            fn()  # warm up: page in the inputs
    print("ready", flush=True)
    for line in sys.stdin:
        print(repr(_round(fns[int(line)])), flush=True)


class NumpyWorker:
    """The persistent numpy process, one round per call."""

    def __init__(self, fc, bags) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--numpy-worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._send(json.dumps({"fc": fc, "bags": bags}))
        if self._recv() != "ready":
            sys.exit("numpy worker failed to start")

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _recv(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            sys.exit("numpy worker died")
        return line.strip()

    def round(self, index: int) -> float:
        self._send(str(index))
        return float(self._recv())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def _tvm_round_fn(spec):
    """Build and check ``spec``; returns a function timing one round (None if it failed)."""
    from codesign.cost_models import tvm_measured as tm

    tvm = tm._tvm()
    try:
        lib = tm.build(spec)
        args = tm.random_inputs(spec)
        tm.check(spec, lib, args)
    except tm.MeasureError as exc:
        print(f"{spec.label()}: {exc}", file=sys.stderr)
        return None
    dev = tvm.cpu(0)
    nd_args = [tvm.runtime.tensor(a, dev) for a in args]
    out = tvm.runtime.empty(tm.output_shape(spec), "float32", dev)
    timer = lib.mod.time_evaluator(
        "main", dev, number=1, repeat=1, min_repeat_ms=round(ROUND_S * 1000)
    )
    lib["main"](*nd_args, out)
    return lambda: float(timer(*nd_args, out).results[0])


def run(fc, bags, *, rounds: int) -> tuple[list, list]:
    """Best-of-``rounds`` seconds per kernel of :func:`_specs`: (numpy's, TVM's); numpy's is
    None for the CSR bags (they share the fixed-pooling row's numpy time), TVM's None if the
    kernel failed."""
    from codesign.cost_models import tvm_measured as tm

    worker = NumpyWorker(fc, bags)
    np_best, tvm_best = [], []
    try:
        with tm.pinned_threads(1):
            for index, spec in enumerate(_specs(fc, bags)):
                tvm_fn = _tvm_round_fn(spec)
                has_np = spec.kind != "embedding_bag_csr"
                t_np, t_tvm = [], []
                for _ in range(rounds):
                    if has_np:
                        t_np.append(worker.round(index))
                    if tvm_fn is not None:
                        t_tvm.append(tvm_fn())
                np_best.append(min(t_np) if t_np else None)
                tvm_best.append(min(t_tvm) if t_tvm else None)
    finally:
        worker.close()
    return np_best, tvm_best


def _geomean(ratios: list[float]) -> float:
    return float(np.exp(np.mean(np.log(ratios)))) if ratios else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two shapes of each, 3 rounds")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per kernel (default 7)")
    parser.add_argument("--numpy-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.numpy_worker:
        numpy_worker()
        return
    from codesign.cost_models.tvm_measured import host_mcpu

    fc = FC_SHAPES[:2] if args.quick else FC_SHAPES
    bags = BAG_SHAPES[:2] if args.quick else BAG_SHAPES
    rounds = args.rounds or (3 if args.quick else 7)
    t_np, t_tvm = run(fc, bags, rounds=rounds)
    print(
        f"single thread, interleaved, best of {rounds} rounds; TVM llvm mcpu={host_mcpu()}; "
        f"numpy {np.__version__}"
    )
    print(
        f"\n{'FC (M,K,N) +bias+relu':<24}{'numpy':>10}{'TVM':>10}{'np GF/s':>9}"
        f"{'TVM GF/s':>9}{'TVM/np':>8}"
    )
    ratios = []
    for (m, k, n), a, b in zip(fc, t_np, t_tvm, strict=False):
        flops = 2 * m * k * n
        if b is None:
            print(f"{f'{m},{k},{n}':<24}{a * 1e6:>8.0f}us  failed")
            continue
        ratios.append(a / b)
        print(
            f"{f'{m},{k},{n}':<24}{a * 1e6:>8.0f}us{b * 1e6:>8.0f}us"
            f"{flops / a / 1e9:>9.1f}{flops / b / 1e9:>9.1f}{a / b:>7.2f}x"
        )
    print(f"FC geomean {_geomean(ratios):.2f}x (target >= 0.9x)")
    print(
        f"\n{'bag (E,D,B,L) zipf 1.09':<26}{'numpy':>10}{'TVM':>10}{'CSR':>10}"
        f"{'TVM GB/s':>9}{'TVM/np':>8}{'CSR/np':>8}"
    )
    bag_ratios = []
    for i, (rows, dim, batch, pooling) in enumerate(bags):
        a, b, c = t_np[len(fc) + 2 * i], t_tvm[len(fc) + 2 * i], t_tvm[len(fc) + 2 * i + 1]
        gathered = batch * pooling * (dim * 4 + 4)
        label = f"{rows:.0e},{dim},{batch},{pooling}"
        if b is None:
            print(f"{label:<26}{a * 1e6:>8.0f}us  failed")
            continue
        bag_ratios.append(a / b)
        csr = f"{c * 1e6:>8.0f}us" if c else "  failed"
        csr_ratio = f"{a / c:>7.2f}x" if c else ""
        print(
            f"{label:<26}{a * 1e6:>8.0f}us{b * 1e6:>8.0f}us{csr}"
            f"{gathered / b / 1e9:>9.2f}{a / b:>7.2f}x{csr_ratio}"
        )
    print(f"embedding-bag geomean {_geomean(bag_ratios):.2f}x (target >= 3x)")


if __name__ == "__main__":
    main()
