"""Load generation and queueing simulation for multi-stage ranking pipelines.

A query (a set of candidate items) visits stage 1, then stage 2, and so on. Each stage is a pool
of identical servers fed by one FIFO queue; a query joins stage ``k + 1`` the instant it leaves
stage ``k``. The caller supplies every query's service time at every stage (from the cost
models, usually as a function of the query's size), so the simulation is exact and
deterministic given the arrivals and service times.

Pieces:

- **Load generation.** :func:`poisson_arrivals` gives arrival times in two conventions: a true
  Poisson process (exponential gaps), or RecPipe/DeepRecSys's integer-millisecond gaps
  (``np.random.poisson(lam=mean_interarrival_ms)``; BACKGROUND §1.6, §2.3).
  :func:`query_sizes` samples candidate counts from a :class:`SizeDistribution`
  (fixed, normal, lognormal, or empirical, as DeepRecSys's ``loadGenerator.py`` offers).
- **Simulation.** :func:`simulate_pipeline` returns per-query, per-stage start and departure
  times (:class:`PipelineRun`); :func:`summarize` turns a run into tail latency, utilisation and
  queueing delay after a warm-up (:class:`LoadReport`).
- **Capacity search.** :func:`max_qps_under_sla` finds the highest load whose tail latency meets
  an SLA, by geometric bracketing and log-space bisection, robust to simulation noise.
- **Analytic references.** :func:`stability_limit_qps`, M/M/1, M/D/1 (mean and exact quantiles
  of the sojourn time) and M/M/c (Erlang C) closed forms, for quick estimates and for tests.

How a FIFO stage is simulated (both methods exact; times in seconds, float64):

- **One server:** Lindley's recursion ``d_n = max(a_n, d_{n-1}) + S_n`` unrolls to the closed
  form ``d_n = C_n + max_{k<=n}(a_k - C_{k-1})`` with ``C_n = S_1 + ... + S_n``, which numpy
  evaluates with ``cumsum`` and ``maximum.accumulate``. It runs in blocks of 2**16 queries,
  carrying the last departure across blocks, so ``C`` stays small and the subtraction loses no
  precision on long runs. About 10 ns per query (20-50 ns with the bookkeeping around it).
- **c servers:** with FIFO, query ``n`` (in order of arrival at the stage) starts at
  ``max(a_n, earliest time a server frees up)``; a heap of the ``c`` servers' free times gives
  that in ``O(log c)``. Each step depends on the one before, so this is a plain-Python loop over
  lists (``heapq.heapreplace``), about 0.25 us per query: 10**4 queries through three 8-server
  stages take about 7 ms (three 1-server stages: under 1 ms). Without a compiler (numba is not
  a dependency) nothing vectorised beats it exactly; when ``c >= n`` no query waits and the loop
  is skipped.

Between stages the queries are re-sorted by their arrival at the next stage (a c-server stage
can reorder them); ties go to the lower query index. A pure delay (a network hop, a PCIe copy)
is a stage with ``servers >= n_queries``: nobody waits there, and it costs O(n).
"""

from __future__ import annotations

import heapq
import math
import numbers
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from codesign.errors import FieldProblem, SpecError

__all__ = [
    "RECPIPE_WARMUP_QUERIES",
    "LoadReport",
    "LoadSpecError",
    "MaxLoadResult",
    "PipelineRun",
    "SizeDistribution",
    "erlang_c",
    "max_qps_under_sla",
    "md1_mean_sojourn_s",
    "md1_sojourn_cdf",
    "md1_sojourn_quantile_s",
    "md1_wait_cdf",
    "mm1_mean_sojourn_s",
    "mm1_sojourn_quantile_s",
    "mmc_mean_wait_s",
    "poisson_arrivals",
    "query_sizes",
    "simulate_pipeline",
    "stability_limit_qps",
    "summarize",
]

#: RecPipe excludes the first 256 queries from utilisation (``run_AccelMultiStageRankingSweep``).
RECPIPE_WARMUP_QUERIES = 256

SizeKind = Literal["fixed", "normal", "lognormal", "empirical"]
_SIZE_KINDS: tuple[str, ...] = ("fixed", "normal", "lognormal", "empirical")
# Parameters each kind uses (beyond min_items / max_items, which every kind takes).
_KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "fixed": ("value",),
    "normal": ("mean", "std"),
    "lognormal": ("sigma", "median", "mean"),
    "empirical": ("samples", "percentiles"),
}
_PARAM_FIELDS = ("value", "mean", "std", "sigma", "median", "samples", "percentiles")
_CONVENTIONS = ("exponential", "recpipe")
_REPORTED_PERCENTILES = (50, 95, 99)
_LINDLEY_BLOCK = 1 << 16


class LoadSpecError(SpecError, ValueError):
    """A load specification (query-size distribution, size file) failed validation.

    A :class:`codesign.errors.SpecError`, so the CLI prints it on one line naming every bad field
    with its path; also a :class:`ValueError` for callers that catch that.
    """


# --------------------------------------------------------------------------- validation


def as_int(value: object) -> int | None:
    """``value`` as an int when it is an integral number (not a bool), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    return None


def _as_real(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _check_positive_int(value: object, name: str) -> int:
    number = as_int(value)
    if number is None or number < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return number


def _check_positive_real(value: object, name: str) -> float:
    number = _as_real(value)
    if number is None or number <= 0.0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return number


def _check_seed(seed: object) -> None:
    if seed is not None and as_int(seed) is None and not isinstance(seed, np.random.SeedSequence):
        raise ValueError(f"seed must be an integer, got {seed!r}")


# --------------------------------------------------------------------------- load generation


def poisson_arrivals(
    n_queries: int,
    *,
    qps: float | None = None,
    mean_interarrival_ms: float | None = None,
    seed: int,
    convention: Literal["exponential", "recpipe"] = "exponential",
) -> np.ndarray:
    """Arrival times in seconds (float64, sorted) of ``n_queries`` queries; the first at 0.

    Give exactly one of ``qps`` and ``mean_interarrival_ms``. The first query arrives at
    ``t = 0`` and each of the ``n_queries - 1`` gaps precedes the next query, as in the load
    generators (send, then sleep).

    ``convention``:

    - ``"exponential"``: a Poisson process, gaps ~ Exp(mean ``1/qps``). Gaps are
      ``standard_exponential() / qps``, so one seed at different ``qps`` gives the same arrival
      pattern rescaled in time (common random numbers: latency is then monotone in ``qps``).
    - ``"recpipe"``: RecPipe's and DeepRecSys's generator, gaps of
      ``rng.poisson(lam=mean_interarrival_ms)`` **whole milliseconds** (``lam = 1000 / qps``
      when ``qps`` is given). The mean gap is right, but this is *not* a Poisson process: the gap
      variance is ``lam`` ms**2 instead of ``lam**2``, and a gap is 0 ms with probability
      ``exp(-lam)`` (61 % at 0.5 ms), so at high load queries arrive in simultaneous bursts,
      and at low load (``lam`` >> 1 ms) arrivals are smoother than Poisson. Use it to reproduce
      those papers' numbers; the draws come from numpy's ``Generator``, not the legacy global
      state the papers used, so the streams differ while the distribution is the same.
    """
    n = _check_positive_int(n_queries, "n_queries")
    _check_seed(seed)
    if (qps is None) == (mean_interarrival_ms is None):
        raise ValueError("give exactly one of qps and mean_interarrival_ms")
    if qps is not None:
        mean_gap_s = 1.0 / _check_positive_real(qps, "qps")
    else:
        mean_gap_s = _check_positive_real(mean_interarrival_ms, "mean_interarrival_ms") * 1e-3
    if convention not in _CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; expected one of {_CONVENTIONS}")
    rng = np.random.default_rng(seed)
    arrivals = np.zeros(n, dtype=np.float64)
    if n == 1:
        return arrivals
    if convention == "exponential":
        gaps_s = rng.standard_exponential(n - 1) * mean_gap_s
    else:
        gaps_s = rng.poisson(lam=mean_gap_s * 1e3, size=n - 1).astype(np.float64) * 1e-3
    np.cumsum(gaps_s, out=arrivals[1:])
    return arrivals


@dataclass(frozen=True, slots=True, kw_only=True)
class SizeDistribution:
    """Distribution of the number of candidate items per query; samples are clipped integers.

    ``kind`` and the fields it uses:

    - ``"fixed"``: ``value``.
    - ``"normal"``: ``mean``, ``std`` (DeepRecSys's ``normal``: ``run_DeepRecSys.sh`` uses
      mean 165, std 16, max 1024).
    - ``"lognormal"``: ``sigma`` (std of ``ln(size)``) and exactly one of ``median``
      (``= exp(mu)``) or ``mean`` (``= exp(mu + sigma**2 / 2)``). DeepRecSys passes its
      ``avg``/``var`` arguments straight to ``np.random.lognormal(mu, sigma)``; this spells the
      same distribution by its median or mean instead of ``mu``.
    - ``"empirical"``: ``samples``, drawn uniformly with replacement; or ``samples`` with
      ``percentiles`` (same length, increasing, in [0, 100]), read as a piecewise-linear inverse
      CDF: ``u ~ U(0, 100)`` maps to the interpolated value, clamped to the end values outside
      the listed range. :meth:`from_file` reads both forms.

    Draws are rounded to the nearest integer (DeepRecSys truncates with ``int()``, which biases
    sizes down by half an item) and clipped to ``[min_items, max_items]``; ``max_items=None``
    means no upper bound.
    """

    kind: SizeKind
    value: float | None = None
    mean: float | None = None
    std: float | None = None
    sigma: float | None = None
    median: float | None = None
    min_items: int = 1
    max_items: int | None = None
    samples: tuple[float, ...] | None = None
    percentiles: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        problems = _size_problems(self, "")
        if problems:
            raise LoadSpecError(problems)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], *, path: str = "") -> SizeDistribution:
        """Build from a plain mapping (a TOML/YAML table), reporting every bad field at once.

        Keys are the field names; an ``"empirical"`` spec may give ``file`` (a path for
        :meth:`from_file`) instead of ``samples``. ``path`` prefixes field names in errors
        (e.g. ``"load.query_size"``).
        """
        prefix = f"{path}." if path else ""
        if not isinstance(spec, Mapping):
            raise LoadSpecError(
                [FieldProblem(path, f"must be a table of fields, got {type(spec).__name__}")]
            )
        allowed = {"kind", "min_items", "max_items", "file", *_PARAM_FIELDS}
        problems = [
            FieldProblem(
                f"{prefix}{key}", "unknown field", f"use one of {', '.join(sorted(allowed))}"
            )
            for key in spec
            if key not in allowed
        ]
        values = {key: spec[key] for key in spec if key in allowed and key != "file"}
        for key in ("samples", "percentiles"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        if "file" in spec:
            if spec.get("kind") != "empirical":
                problems.append(FieldProblem(f"{prefix}file", "only kind 'empirical' reads a file"))
            elif "samples" in spec or "percentiles" in spec:
                problems.append(
                    FieldProblem(f"{prefix}file", "give either file or samples, not both")
                )
            else:
                try:
                    loaded = cls.from_file(spec["file"])
                except LoadSpecError as err:
                    problems.extend(FieldProblem(f"{prefix}file", str(p)) for p in err.problems)
                else:
                    values["samples"] = loaded.samples
                    values["percentiles"] = loaded.percentiles
        if "kind" not in values:
            problems.append(
                FieldProblem(f"{prefix}kind", "missing", f"use one of {', '.join(_SIZE_KINDS)}")
            )
        else:
            probe = _UncheckedSize(values)
            problems.extend(_size_problems(probe, prefix))
        if problems:
            raise LoadSpecError(problems)
        return cls(**values)

    @classmethod
    def from_file(
        cls, path: str | Path, *, min_items: int = 1, max_items: int | None = None
    ) -> SizeDistribution:
        """Read an empirical size distribution from a text file.

        Accepted (blank lines and ``#`` comments skipped; columns split on whitespace or commas):

        - **one number per line**: DeepRecSys's ``batch_distribution.txt`` format. Its loader
          reads one float per line and draws a line uniformly at random, so the lines may be raw
          query sizes or the values at equally spaced percentiles; both are sampled uniformly.
        - **``percentile value`` pairs**: percentiles increasing in [0, 100], values
          non-decreasing; sampled through the linearly interpolated inverse CDF.
        """
        name = str(path)
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise LoadSpecError(
                [FieldProblem(name, f"cannot read size file ({err.strerror or err})")]
            ) from None
        rows: list[tuple[int, list[float]]] = []
        problems: list[FieldProblem] = []
        for lineno, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].replace(",", " ").strip()
            if not line:
                continue
            try:
                numbers_ = [float(tok) for tok in line.split()]
            except ValueError:
                problems.append(FieldProblem(f"{name}:{lineno}", f"not a number: {line!r}"))
                continue
            if len(numbers_) not in (1, 2) or not all(math.isfinite(x) for x in numbers_):
                problems.append(
                    FieldProblem(
                        f"{name}:{lineno}",
                        f"expected 'value' or 'percentile value', got {line!r}",
                    )
                )
                continue
            rows.append((lineno, numbers_))
        if not rows and not problems:
            problems.append(FieldProblem(name, "size file holds no values"))
        widths = {len(r) for _, r in rows}
        if len(widths) > 1:
            first_two = next(n for n, r in rows if len(r) == 2)
            problems.append(
                FieldProblem(
                    f"{name}:{first_two}",
                    "mixes one-column and two-column lines; use one format throughout",
                )
            )
        if problems:
            raise LoadSpecError(problems)
        if widths == {1}:
            samples, percentiles = tuple(r[0] for _, r in rows), None
        else:
            percentiles = tuple(r[0] for _, r in rows)
            samples = tuple(r[1] for _, r in rows)
        try:
            return cls(
                kind="empirical",
                samples=samples,
                percentiles=percentiles,
                min_items=min_items,
                max_items=max_items,
            )
        except LoadSpecError as err:
            raise LoadSpecError(err.problems, source=name) from None


class _UncheckedSize:
    """Attribute view of a raw mapping, so from_dict can collect problems before building."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.kind = values.get("kind")
        for key in _PARAM_FIELDS:
            setattr(self, key, values.get(key))
        self.min_items = values.get("min_items", 1)
        self.max_items = values.get("max_items")


def _size_problems(dist: Any, prefix: str) -> list[FieldProblem]:
    """Every problem with a size distribution's fields (empty when valid)."""
    problems: list[FieldProblem] = []

    def bad(name: str, message: str, fix: str = "") -> None:
        problems.append(FieldProblem(f"{prefix}{name}", message, fix))

    kind = dist.kind
    if kind not in _SIZE_KINDS:
        bad("kind", f"unknown kind {kind!r}", f"use one of {', '.join(_SIZE_KINDS)}")
        return problems
    used = _KIND_FIELDS[kind]
    for name in _PARAM_FIELDS:
        if name not in used and getattr(dist, name) is not None:
            bad(name, f"not used by kind {kind!r}", f"{kind} takes {', '.join(used)}")

    min_items = as_int(dist.min_items)
    if min_items is None or min_items < 1:
        bad("min_items", f"must be an integer >= 1, got {dist.min_items!r}")
    if dist.max_items is not None:
        max_items = as_int(dist.max_items)
        if max_items is None or max_items < 1:
            bad("max_items", f"must be a positive integer or None, got {dist.max_items!r}")
        elif min_items is not None and max_items < min_items:
            bad("max_items", f"({max_items}) is below min_items ({min_items})")

    def need(name: str, *, allow_zero: bool = False) -> None:
        value = getattr(dist, name)
        if value is None:
            bad(name, f"required for kind {kind!r}")
            return
        number = _as_real(value)
        if number is None or number < 0 or (number == 0 and not allow_zero):
            what = "non-negative" if allow_zero else "positive"
            bad(name, f"must be a {what} finite number, got {value!r}")

    if kind == "fixed":
        need("value")
    elif kind == "normal":
        need("mean")
        need("std", allow_zero=True)
    elif kind == "lognormal":
        need("sigma")
        if (dist.median is None) == (dist.mean is None):
            bad("median", "give exactly one of median and mean for kind 'lognormal'")
        else:
            need("median" if dist.median is not None else "mean")
    else:
        _empirical_problems(dist, bad)
    return problems


def _empirical_problems(dist: Any, bad: Callable[..., None]) -> None:
    samples = dist.samples
    if samples is None:
        bad("samples", "required for kind 'empirical'", "give samples, or read a file")
        return
    if not isinstance(samples, tuple | list) or not samples:
        bad("samples", "must be a non-empty sequence of numbers")
        return
    values = [_as_real(v) for v in samples]
    if any(v is None or v < 0 for v in values):
        bad("samples", "must hold finite non-negative numbers")
        return
    percentiles = dist.percentiles
    if percentiles is None:
        return
    if not isinstance(percentiles, tuple | list) or len(percentiles) != len(samples):
        bad("percentiles", "must be a sequence as long as samples")
        return
    pcts = [_as_real(p) for p in percentiles]
    if any(p is None or not 0.0 <= p <= 100.0 for p in pcts):
        bad("percentiles", "must hold numbers in [0, 100]")
    elif any(b <= a for a, b in zip(pcts, pcts[1:], strict=False)):  # type: ignore[operator]
        bad("percentiles", "must be strictly increasing")
    elif any(b < a for a, b in zip(values, values[1:], strict=False)):  # type: ignore[operator]
        bad("samples", "values at increasing percentiles must be non-decreasing")


def query_sizes(n_queries: int, dist: SizeDistribution, *, seed: int) -> np.ndarray:
    """``n_queries`` query sizes (candidate items) drawn from ``dist``: int64, clipped."""
    n = _check_positive_int(n_queries, "n_queries")
    _check_seed(seed)
    if not isinstance(dist, SizeDistribution):
        raise TypeError(f"dist must be a SizeDistribution, got {type(dist).__name__}")
    rng = np.random.default_rng(seed)
    if dist.kind == "fixed":
        draws = np.full(n, float(dist.value))  # type: ignore[arg-type]
    elif dist.kind == "normal":
        draws = rng.normal(float(dist.mean), float(dist.std), n)  # type: ignore[arg-type]
    elif dist.kind == "lognormal":
        sigma = float(dist.sigma)  # type: ignore[arg-type]
        if dist.median is not None:
            mu = math.log(dist.median)
        else:
            mu = math.log(dist.mean) - 0.5 * sigma * sigma  # type: ignore[arg-type]
        draws = rng.lognormal(mu, sigma, n)
    else:
        samples = np.asarray(dist.samples, dtype=np.float64)
        if dist.percentiles is None:
            draws = samples[rng.integers(0, samples.size, n)]
        else:
            u = rng.uniform(0.0, 100.0, n)
            draws = np.interp(u, np.asarray(dist.percentiles, dtype=np.float64), samples)
    upper = np.inf if dist.max_items is None else float(dist.max_items)
    clipped = np.clip(np.rint(draws), float(dist.min_items), upper)
    return clipped.astype(np.int64)


# --------------------------------------------------------------------------- simulation


@dataclass(frozen=True, eq=False)
class PipelineRun:
    """The outcome of :func:`simulate_pipeline`; all times in seconds, arrays read-only.

    Rows are queries in input order; columns are stages. ``wait_s`` is the queueing delay at
    each stage (start minus arrival at that stage); ``busy_s`` the total service per stage.
    """

    arrival_s: np.ndarray
    start_s: np.ndarray
    departure_s: np.ndarray
    latency_s: np.ndarray
    wait_s: np.ndarray
    service_s: np.ndarray
    busy_s: np.ndarray
    servers: tuple[int, ...]

    @property
    def n_queries(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def n_stages(self) -> int:
        return len(self.servers)

    @property
    def stage_arrival_s(self) -> np.ndarray:
        """Arrival time of each query at each stage (``arrival_s``, then the previous departure)."""
        return np.column_stack([self.arrival_s, self.departure_s[:, :-1]])


def simulate_pipeline(
    arrivals_s: npt.ArrayLike,
    service_s: npt.ArrayLike,
    servers: Sequence[int] | int,
    *,
    seed: int | None = None,
) -> PipelineRun:
    """Push queries through FIFO multi-server stages in series; exact, deterministic.

    ``arrivals_s``: shape ``(n,)``, any order (FIFO by arrival, ties by query index).
    ``service_s``: shape ``(n, stages)`` (or ``(n,)`` for one stage), non-negative.
    ``servers``: servers per stage (one int per stage; a bare int for one stage).
    ``seed``: accepted for the house rule that every component takes one; FIFO with given
    service times involves no randomness, so it changes nothing.
    """
    del seed  # deterministic: see the docstring
    arrivals = np.asarray(arrivals_s, dtype=np.float64)
    if arrivals.ndim != 1 or arrivals.size == 0:
        raise ValueError(f"arrivals_s must be a non-empty 1-D array, got shape {arrivals.shape}")
    if not (math.isfinite(arrivals.min()) and math.isfinite(arrivals.max())):  # NaN propagates
        raise ValueError("arrivals_s must be finite")
    service = np.asarray(service_s, dtype=np.float64)
    if service.ndim == 1:
        service = service[:, None]
    if service.ndim != 2 or service.shape[0] != arrivals.size or service.shape[1] == 0:
        raise ValueError(
            f"service_s must have shape (n_queries, n_stages) = ({arrivals.size}, k >= 1), "
            f"got {np.shape(service_s)}"
        )
    if not (service.min() >= 0.0 and math.isfinite(service.max())):  # NaN fails both
        raise ValueError("service_s must be finite and non-negative")
    counts = (servers,) if isinstance(servers, numbers.Integral) else tuple(servers)
    if len(counts) != service.shape[1]:
        raise ValueError(
            f"servers has {len(counts)} entries but service_s has {service.shape[1]} stages"
        )
    pool = tuple(_check_positive_int(c, f"servers[{i}]") for i, c in enumerate(counts))

    n, n_stages = service.shape
    start = np.empty((n, n_stages), dtype=np.float64)
    departure = np.empty((n, n_stages), dtype=np.float64)
    stage_arrival = arrivals
    for k in range(n_stages):
        if n == 1 or bool(np.all(stage_arrival[1:] >= stage_arrival[:-1])):
            # Already in FIFO order (as after a one-server stage): skip the permutation.
            s_k = np.ascontiguousarray(service[:, k])
            st = _fifo_starts(np.ascontiguousarray(stage_arrival), s_k, pool[k])
            start[:, k] = st
            departure[:, k] = st + s_k
        else:
            order = np.argsort(stage_arrival, kind="stable")
            s_sorted = service[order, k]
            st = _fifo_starts(stage_arrival[order], s_sorted, pool[k])
            start[order, k] = st
            departure[order, k] = st + s_sorted
        stage_arrival = departure[:, k]
    wait = start - np.column_stack([arrivals, departure[:, :-1]])
    latency = departure[:, -1] - arrivals
    busy = service.sum(axis=0)
    arrays = (arrivals.copy(), start, departure, latency, wait, service.copy(), busy)
    for arr in arrays:
        arr.flags.writeable = False
    return PipelineRun(*arrays, servers=pool)


def _fifo_starts(a: np.ndarray, s: np.ndarray, servers: int) -> np.ndarray:
    """Start times at a FIFO stage with ``servers`` servers; ``a`` sorted ascending."""
    if servers >= a.size:
        return a.copy()
    if servers == 1:
        return _lindley_starts(a, s)
    return _heap_starts(a, s, servers)


def _lindley_starts(a: np.ndarray, s: np.ndarray, block: int = _LINDLEY_BLOCK) -> np.ndarray:
    """Single-server FIFO by Lindley's recursion in closed form, blockwise.

    Within a block, ``d_n = C_n + max(d_prev, max_{k<=n}(a_k - C_{k-1}))`` with ``C`` the
    block-local cumulative service; the start is ``d_n - S_n = C_{n-1} + max(...)``.
    """
    n = a.size
    start = np.empty(n, dtype=np.float64)
    d_prev = -math.inf
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        c_before = np.empty(hi - lo, dtype=np.float64)
        c_before[0] = 0.0
        np.cumsum(s[lo : hi - 1], out=c_before[1:])
        x = a[lo:hi] - c_before
        x[0] = max(x[0], d_prev)
        np.maximum.accumulate(x, out=x)
        x += c_before
        np.maximum(x, a[lo:hi], out=x)  # guards against rounding below the arrival
        start[lo:hi] = x
        d_prev = float(x[-1] + s[hi - 1])
    return start


def _heap_starts(a: np.ndarray, s: np.ndarray, servers: int) -> np.ndarray:
    """c-server FIFO: each query takes the server that frees up first (a heap of free times)."""
    free = [-math.inf] * servers
    starts: list[float] = []
    append = starts.append
    replace = heapq.heapreplace
    for arrival, service in zip(a.tolist(), s.tolist(), strict=True):
        earliest = free[0]
        begin = earliest if earliest > arrival else arrival
        append(begin)
        replace(free, begin + service)
    return np.asarray(starts, dtype=np.float64)


# --------------------------------------------------------------------------- reporting


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadReport:
    """Latency, utilisation and queueing delay of the measured (post-warm-up) queries.

    Percentiles use ``np.percentile``'s linear interpolation (as RecPipe's ``utils.py``).
    ``utilization[k]`` is the measured queries' busy time at stage ``k`` over
    ``servers[k] * span``, with ``span`` from the first measured arrival to the last measured
    departure; ``throughput_qps`` is ``queries / span``. Per-stage tuples follow stage order.
    """

    queries: int
    warmup: int
    p50_latency_s: float
    p95_latency_s: float
    p99_latency_s: float
    mean_latency_s: float
    max_latency_s: float
    throughput_qps: float
    utilization: tuple[float, ...]
    mean_wait_s: tuple[float, ...]
    p95_wait_s: tuple[float, ...]

    def latency_percentile_s(self, percentile: float) -> float:
        """The reported latency at ``percentile`` (one of 50, 95, 99)."""
        if percentile not in _REPORTED_PERCENTILES:
            raise ValueError(f"percentile must be one of {_REPORTED_PERCENTILES}, got {percentile}")
        return float(getattr(self, f"p{int(percentile)}_latency_s"))

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; keys carry units (``_s``, ``_qps``; utilisation a fraction)."""
        return {
            "queries": self.queries,
            "warmup_queries": self.warmup,
            "p50_latency_s": self.p50_latency_s,
            "p95_latency_s": self.p95_latency_s,
            "p99_latency_s": self.p99_latency_s,
            "mean_latency_s": self.mean_latency_s,
            "max_latency_s": self.max_latency_s,
            "throughput_qps": self.throughput_qps,
            "utilization": list(self.utilization),
            "mean_wait_s": list(self.mean_wait_s),
            "p95_wait_s": list(self.p95_wait_s),
        }


def summarize(run: PipelineRun, *, warmup: int = 0) -> LoadReport:
    """Tail latency, utilisation and per-stage waits, excluding the first ``warmup`` queries.

    The warm-up queries are the first ``warmup`` by arrival (ties by index); RecPipe uses 256
    (:data:`RECPIPE_WARMUP_QUERIES`). They still load the servers; they are only left out of the
    statistics.
    """
    count = as_int(warmup)
    if count is None or count < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
    if count >= run.n_queries:
        raise ValueError(f"warmup ({count}) must be below the number of queries ({run.n_queries})")
    if count:
        keep = np.argsort(run.arrival_s, kind="stable")[count:]
        latency = run.latency_s[keep]
        wait = run.wait_s[keep]
        service = run.service_s[keep]
        first_arrival = float(run.arrival_s[keep].min())
        last_departure = float(run.departure_s[keep, -1].max())
    else:
        latency, wait, service = run.latency_s, run.wait_s, run.service_s
        first_arrival = float(run.arrival_s.min())
        last_departure = float(run.departure_s[:, -1].max())
    span_s = last_departure - first_arrival
    measured = int(latency.size)
    p50, p95, p99 = np.percentile(latency, _REPORTED_PERCENTILES)
    if span_s > 0.0:
        utilization = service.sum(axis=0) / (np.asarray(run.servers, dtype=np.float64) * span_s)
        throughput = measured / span_s
    else:
        utilization = np.full(run.n_stages, math.nan)
        throughput = math.nan
    return LoadReport(
        queries=measured,
        warmup=count,
        p50_latency_s=float(p50),
        p95_latency_s=float(p95),
        p99_latency_s=float(p99),
        mean_latency_s=float(latency.mean()),
        max_latency_s=float(latency.max()),
        throughput_qps=float(throughput),
        utilization=tuple(float(u) for u in utilization),
        mean_wait_s=tuple(float(w) for w in wait.mean(axis=0)),
        p95_wait_s=tuple(float(w) for w in np.percentile(wait, 95, axis=0)),
    )


# --------------------------------------------------------------------------- capacity search


@dataclass(frozen=True, slots=True, kw_only=True)
class MaxLoadResult:
    """The highest load found to meet the SLA, and how the search got there.

    ``qps`` is the largest load the search verified (0.0 with ``feasible=False`` when even
    ``qps_low`` misses the SLA: the unloaded latency is too high). ``capped`` says the search
    stopped at ``qps_high`` with the SLA still met. ``evaluations`` lists every load tried as
    ``(qps, p_latency_s, ok)``, ``p_latency_s`` being the value the decision used.
    """

    qps: float
    p_latency_s: float
    feasible: bool
    capped: bool
    sla_s: float
    percentile: float
    evaluations: list[tuple[float, float, bool]] = field(default_factory=list)
    report: LoadReport | None = None


def max_qps_under_sla(
    evaluate: Callable[[float, int], LoadReport],
    *,
    sla_s: float,
    percentile: float = 95,
    qps_low: float,
    qps_high: float | None = None,
    rel_tol: float = 0.02,
    seed: int = 0,
    n_seeds: int = 3,
    noise_band: float = 0.1,
    growth: float = 2.0,
    max_steps: int = 64,
) -> MaxLoadResult:
    """Largest QPS whose ``percentile`` latency meets ``sla_s``, within ``rel_tol``.

    ``evaluate(qps, seed)`` simulates one load point and returns its :class:`LoadReport`.

    1. **Bracket:** from ``qps_low``, multiply by ``growth`` until the SLA is missed, or until
       ``qps_high`` (e.g. a little below :func:`stability_limit_qps`) is reached and met, which
       returns ``qps_high`` with ``capped=True``.
    2. **Bisect** in log space between the last load that met the SLA and the first that
       missed it, until they are within a factor ``1 + rel_tol``; return the lower one.

    Noise rule: each load is first simulated with ``seed``. If that latency lies within
    ``noise_band`` (relative) of the SLA, it is simulated again with ``seed + 1`` ..
    ``seed + n_seeds - 1`` and the decision uses the **median** of the ``n_seeds`` latencies;
    farther from the SLA one run decides. Seeds are the same at every load, so with
    ``poisson_arrivals(convention="exponential")`` and the same sizes per seed the loads are
    compared on common random numbers, which keeps latency monotone in ``qps``.
    """
    sla = _check_positive_real(sla_s, "sla_s")
    if percentile not in _REPORTED_PERCENTILES:
        raise ValueError(f"percentile must be one of {_REPORTED_PERCENTILES}, got {percentile}")
    low = _check_positive_real(qps_low, "qps_low")
    high = None if qps_high is None else _check_positive_real(qps_high, "qps_high")
    if high is not None and high < low:
        raise ValueError(f"qps_high ({high}) is below qps_low ({low})")
    tol = _check_positive_real(rel_tol, "rel_tol")
    rounds = _check_positive_int(n_seeds, "n_seeds")
    if _as_real(growth) is None or growth <= 1.0:
        raise ValueError(f"growth must be a number above 1, got {growth!r}")
    base_seed = as_int(seed)
    if base_seed is None:
        raise ValueError(f"seed must be an integer, got {seed!r}")

    evaluations: list[tuple[float, float, bool]] = []
    reports: dict[float, tuple[float, LoadReport]] = {}

    def check(qps: float) -> bool:
        first = evaluate(qps, base_seed)
        latencies = [first.latency_percentile_s(percentile)]
        if rounds > 1 and abs(latencies[0] - sla) <= noise_band * sla:
            latencies += [
                evaluate(qps, base_seed + i).latency_percentile_s(percentile)
                for i in range(1, rounds)
            ]
        decided = statistics.median(latencies)
        ok = decided <= sla
        evaluations.append((qps, decided, ok))
        reports[qps] = (decided, first)
        return ok

    def result(qps: float, *, feasible: bool = True, capped: bool = False) -> MaxLoadResult:
        latency, report = reports[qps]
        return MaxLoadResult(
            qps=qps if feasible else 0.0,
            p_latency_s=latency,
            feasible=feasible,
            capped=capped,
            sla_s=sla,
            percentile=float(percentile),
            evaluations=evaluations,
            report=report,
        )

    if not check(low):
        return result(low, feasible=False)
    lo, hi = low, None
    for _ in range(max_steps):
        if high is not None and lo >= high:
            return result(lo, capped=True)
        candidate = lo * growth if high is None else min(lo * growth, high)
        if check(candidate):
            lo = candidate
        else:
            hi = candidate
            break
    if hi is None:
        raise RuntimeError(
            f"the SLA was still met at {lo:.4g} QPS after {max_steps} growth steps; "
            "does evaluate() depend on qps? Pass qps_high to cap the search"
        )
    while hi / lo > 1.0 + tol:
        mid = math.sqrt(lo * hi)
        if check(mid):
            lo = mid
        else:
            hi = mid
    return result(lo)


# --------------------------------------------------------------------------- analytic references


def stability_limit_qps(
    mean_service_s: Sequence[float] | float, servers: Sequence[int] | int
) -> float:
    """Highest sustainable arrival rate: ``min_k servers[k] / mean_service_s[k]``.

    At or above it some stage's queue grows without bound; tail latency explodes well before.
    """
    means = np.atleast_1d(np.asarray(mean_service_s, dtype=np.float64))
    pools = np.atleast_1d(np.asarray(servers, dtype=np.float64))
    if means.shape != pools.shape or means.ndim != 1:
        raise ValueError("mean_service_s and servers must have one entry per stage")
    if not (np.all(np.isfinite(means)) and np.all(means >= 0) and np.all(pools >= 1)):
        raise ValueError("mean service times must be finite and >= 0, servers >= 1")
    with np.errstate(divide="ignore"):
        return float(np.min(pools / means))


def _check_load(arrival_rate_qps: float, service_rate: float) -> float:
    rho = arrival_rate_qps / service_rate
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"utilisation must be in [0, 1), got {rho:.4g}")
    return rho


def mm1_mean_sojourn_s(arrival_rate_qps: float, service_rate_qps: float) -> float:
    """M/M/1 mean time in system, ``1 / (mu - lambda)``."""
    _check_load(arrival_rate_qps, service_rate_qps)
    return 1.0 / (service_rate_qps - arrival_rate_qps)


def mm1_sojourn_quantile_s(q: float, arrival_rate_qps: float, service_rate_qps: float) -> float:
    """M/M/1 sojourn ``q``-quantile (``q`` in (0, 1)): the sojourn is Exp(``mu - lambda``)."""
    _check_load(arrival_rate_qps, service_rate_qps)
    return -math.log1p(-q) / (service_rate_qps - arrival_rate_qps)


def md1_mean_sojourn_s(arrival_rate_qps: float, service_s: float) -> float:
    """M/D/1 mean time in system (Pollaczek-Khinchine): ``D + rho D / (2 (1 - rho))``."""
    rho = _check_load(arrival_rate_qps * service_s, 1.0)
    return service_s + rho * service_s / (2.0 * (1.0 - rho))


def md1_wait_cdf(x_s: float, arrival_rate_qps: float, service_s: float) -> float:
    """M/D/1 waiting-time CDF ``P(W <= x)``, exact (Erlang's formula, 1909).

    ``P(W <= x) = (1 - rho) sum_{k=0}^{floor(x/D)} [lam (k D - x)]**k / k! exp(-lam (k D - x))``
    (see e.g. Franx, "A simple solution for the M/D/c waiting time distribution", Oper. Res.
    Lett. 29 (2001), eq. for c = 1). The terms alternate in sign and reach about
    ``exp(2 lambda x)`` while the sum is below 1, so float64 loses every digit once
    ``lambda x`` exceeds ~15. The sum is therefore evaluated in :mod:`decimal` with
    ``2 lambda x / ln 10 + 30`` significant digits, which leaves ~30 correct digits.
    """
    lam, d = float(arrival_rate_qps), float(service_s)
    _check_load(lam * d, 1.0)
    if x_s < 0.0:
        return 0.0
    rho = lam * d
    if rho == 0.0:
        return 1.0
    digits = int(2.0 * lam * x_s / math.log(10.0)) + 30
    with localcontext() as ctx:
        ctx.prec = digits
        lam_d, d_d, x_d = Decimal(lam), Decimal(d), Decimal(x_s)
        total = Decimal(0)
        factorial = Decimal(1)
        for k in range(int(math.floor(x_s / d)) + 1):
            if k:
                factorial *= k
            u = lam_d * (k * d_d - x_d)  # <= 0
            power = u**k if k else Decimal(1)  # Decimal refuses 0 ** 0
            total += power / factorial * (-u).exp()
        value = float((1 - Decimal(rho)) * total)
    return min(max(value, 0.0), 1.0)


def md1_sojourn_cdf(t_s: float, arrival_rate_qps: float, service_s: float) -> float:
    """M/D/1 sojourn-time CDF ``P(W + D <= t)``."""
    return md1_wait_cdf(t_s - service_s, arrival_rate_qps, service_s)


def md1_sojourn_quantile_s(q: float, arrival_rate_qps: float, service_s: float) -> float:
    """M/D/1 sojourn ``q``-quantile from the exact CDF (bisection to 1e-12 relative)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q!r}")
    lam, d = float(arrival_rate_qps), float(service_s)
    rho = _check_load(lam * d, 1.0)
    if 1.0 - rho >= q:  # the atom at zero wait already holds q of the mass
        return d
    lo, hi = 0.0, d
    while md1_wait_cdf(hi, lam, d) < q:
        lo, hi = hi, 2.0 * hi
    while hi - lo > 1e-12 * hi:
        mid = 0.5 * (lo + hi)
        if md1_wait_cdf(mid, lam, d) < q:
            lo = mid
        else:
            hi = mid
    return d + 0.5 * (lo + hi)


def erlang_c(servers: int, offered_load: float) -> float:
    """Erlang C: probability an arrival waits in M/M/c, ``offered_load = lambda / mu < c``."""
    c = _check_positive_int(servers, "servers")
    a = float(offered_load)
    if not 0.0 <= a < c:
        raise ValueError(f"offered load must be in [0, {c}), got {a!r}")
    term, head = 1.0, 1.0  # a**k / k!, summed for k < c
    for k in range(1, c):
        term *= a / k
        head += term
    tail = term * a / c * c / (c - a)
    return tail / (head + tail)


def mmc_mean_wait_s(servers: int, arrival_rate_qps: float, service_rate_qps: float) -> float:
    """M/M/c mean queueing delay ``C(c, a) / (c mu - lambda)`` (Erlang C)."""
    probability = erlang_c(servers, arrival_rate_qps / service_rate_qps)
    return probability / (servers * service_rate_qps - arrival_rate_qps)
