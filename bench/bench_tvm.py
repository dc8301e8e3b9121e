"""Our TVM kernels against numpy, single thread: FC (dense + bias + relu) vs OpenBLAS
``np.matmul`` on MLP shapes (target >= 0.9x) and embedding-bag vs a numpy gather
``table[idx].sum(1)`` (target >= 3x).

Run ``python bench/bench_tvm.py`` (about a minute) or ``--quick``. numpy runs in a separate
process from TVM (TVM's thread pool can disturb OpenBLAS in the same process), both pinned to
one thread. Prints one row per shape: numpy's and TVM's time, GFLOP/s or GB/s, and the ratio
(numpy time / TVM time). Not a test: the machine is shared and the numbers are noisy.
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


def _best(fn, *, min_s: float = 0.2, repeat: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeat):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_s / repeat:
                break
        times.append(elapsed / n)
    return float(np.median(times))


def numpy_side(fc, bags) -> dict:
    """Runs in its own process: numpy/OpenBLAS timings."""
    from codesign.cost_models.tvm_measured import zipf_ids

    rng = np.random.default_rng(0)
    out = {"fc": [], "bag": []}
    for m, k, n in fc:
        x = rng.standard_normal((m, k), dtype=np.float32)
        w = rng.standard_normal((k, n), dtype=np.float32)
        b = rng.standard_normal(n, dtype=np.float32)
        y = np.empty((m, n), np.float32)

        def fc_np(x=x, w=w, b=b, y=y):
            np.matmul(x, w, out=y)
            y += b
            np.maximum(y, 0, out=y)

        out["fc"].append(_best(fc_np))
    for rows, dim, batch, pooling in bags:
        table = rng.standard_normal((rows, dim), dtype=np.float32)
        idx = zipf_ids(rows, batch * pooling, 1.09, rng).reshape(batch, pooling)
        out["bag"].append(_best(lambda t=table, i=idx: t[i].sum(axis=1)))
    return out


def tvm_side(fc, bags) -> dict:
    from codesign.cost_models import tvm_measured as tm

    K = tm.KernelSpec.make
    timing = tm.TimingConfig(repeat=5, min_repeat_ms=40, threads=1)
    out = {"fc": [], "bag": [], "csr": [], "mcpu": tm.host_mcpu()}
    for m, k, n in fc:
        res = tm.measure(K("dense", m=m, k=k, n=n, bias=True, activation="relu"), timing)
        out["fc"].append(res.latency_s if res.ok else None)
    for rows, dim, batch, pooling in bags:
        for kind, key in (("embedding_bag", "bag"), ("embedding_bag_csr", "csr")):
            spec = K(kind, rows=rows, dim=dim, batch=batch, pooling=pooling, mode="sum", alpha=1.09)
            res = tm.measure(spec, timing)
            out[key].append(res.latency_s if res.ok else None)
    return out


def _run_side(side: str, fc, bags) -> dict:
    code = (
        f"import json,sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
        f"import bench_tvm as b; print(json.dumps(b.{side}_side({fc!r}, {bags!r})))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{side} side failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two shapes of each")
    args = parser.parse_args()
    fc = FC_SHAPES[:2] if args.quick else FC_SHAPES
    bags = BAG_SHAPES[:2] if args.quick else BAG_SHAPES
    npy = _run_side("numpy", fc, bags)
    tvm = _run_side("tvm", fc, bags)
    print(f"single thread; TVM llvm mcpu={tvm['mcpu']}; numpy {np.__version__}")
    print(
        f"\n{'FC (M,K,N) +bias+relu':<24}{'numpy':>10}{'TVM':>10}{'np GF/s':>9}"
        f"{'TVM GF/s':>9}{'TVM/np':>8}"
    )
    ratios = []
    for (m, k, n), t_np, t_tvm in zip(fc, npy["fc"], tvm["fc"], strict=True):
        flops = 2 * m * k * n
        if t_tvm is None:
            print(f"{f'{m},{k},{n}':<24}{t_np * 1e6:>8.0f}us  failed")
            continue
        ratios.append(t_np / t_tvm)
        print(
            f"{f'{m},{k},{n}':<24}{t_np * 1e6:>8.0f}us{t_tvm * 1e6:>8.0f}us"
            f"{flops / t_np / 1e9:>9.1f}{flops / t_tvm / 1e9:>9.1f}{t_np / t_tvm:>7.2f}x"
        )
    fc_geo = float(np.exp(np.mean(np.log(ratios)))) if ratios else float("nan")
    print(f"FC geomean {fc_geo:.2f}x (target >= 0.9x)")
    print(
        f"\n{'bag (E,D,B,L) zipf 1.09':<26}{'numpy':>10}{'TVM':>10}{'CSR':>10}"
        f"{'TVM GB/s':>9}{'TVM/np':>8}{'CSR/np':>8}"
    )
    bag_ratios = []
    for (rows, dim, batch, pooling), t_np, t_tvm, t_csr in zip(
        bags, npy["bag"], tvm["bag"], tvm["csr"], strict=True
    ):
        gathered = batch * pooling * (dim * 4 + 4)
        label = f"{rows:.0e},{dim},{batch},{pooling}"
        if t_tvm is None:
            print(f"{label:<26}{t_np * 1e6:>8.0f}us  failed")
            continue
        bag_ratios.append(t_np / t_tvm)
        csr = f"{t_csr * 1e6:>8.0f}us" if t_csr else "  failed"
        csr_ratio = f"{t_np / t_csr:>7.2f}x" if t_csr else ""
        print(
            f"{label:<26}{t_np * 1e6:>8.0f}us{t_tvm * 1e6:>8.0f}us{csr}"
            f"{gathered / t_tvm / 1e9:>9.2f}{t_np / t_tvm:>7.2f}x{csr_ratio}"
        )
    bag_geo = float(np.exp(np.mean(np.log(bag_ratios)))) if bag_ratios else float("nan")
    print(f"embedding-bag geomean {bag_geo:.2f}x (target >= 3x)")


if __name__ == "__main__":
    main()
