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
- **Capacity search.** :func:`bisect_max_qps` (behind :func:`max_qps_batch`) finds the highest
  load whose tail latency meets an SLA for many designs at once, on common random numbers
  (:class:`LoadStream`), by log-space bisection below the stability limit.
- **Analytic references.** :func:`stability_limit_qps`, M/M/1, M/D/1 (mean and exact quantiles
  of the sojourn time) and M/M/c (Erlang C) closed forms, for quick estimates and for tests.
- **Batch, deterministic evaluation** (a co-design search evaluates thousands of designs):
  :class:`LoadStream` fixes one random load (common random numbers) that every design and every
  QPS reuses; :func:`simulate_batch` simulates ``N`` designs at once, bit for bit what
  :func:`simulate_pipeline` gives each; :func:`tail_latency_batch` takes their percentiles as
  :func:`summarize` does; :func:`latency_lower_bound_s`, :func:`max_qps_upper_bound` and
  :func:`screen` skip designs that cannot reach the front; :func:`max_qps_batch` bisects all
  designs' capacity in parallel; :func:`queries_for_tolerance` and :func:`quantile_rank_band`
  size the run for a stated tolerance.

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
    "LoadStream",
    "PipelineRun",
    "SizeDistribution",
    "erlang_c",
    "latency_lower_bound_s",
    "max_qps_batch",
    "max_qps_upper_bound",
    "md1_mean_sojourn_s",
    "md1_sojourn_cdf",
    "md1_sojourn_quantile_s",
    "md1_wait_cdf",
    "mm1_mean_sojourn_s",
    "mm1_sojourn_quantile_s",
    "mmc_mean_wait_s",
    "poisson_arrivals",
    "quantile_rank_band",
    "queries_for_tolerance",
    "query_sizes",
    "screen",
    "simulate_batch",
    "simulate_pipeline",
    "stability_limit_batch_qps",
    "stability_limit_qps",
    "summarize",
    "tail_latency_batch",
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
_SIZE_STREAM = 1  # LoadStream's child stream for the size quantiles
_TINY_QUANTILE = 2.0**-53
_BOUND_SLACK = 1e-6  # relative; see latency_lower_bound_s
_CAP_FRACTION = 0.999  # max-QPS searches stop just below the stability limit


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


# --------------------------------------------------------------------------- stability


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


# --------------------------------------------------------------------------- common random numbers


@dataclass(frozen=True, eq=False, kw_only=True)
class LoadStream:
    """One fixed random load, reused at every QPS and by every design (common random numbers).

    ``LoadStream(n_queries=2000, seed=0)`` draws, once:

    - ``unit_gaps``: the ``n_queries - 1`` standard-exponential gaps that
      ``np.random.default_rng(seed).standard_exponential`` gives, i.e. the very draws
      :func:`poisson_arrivals` uses for the same seed.
    - ``size_quantiles`` (when ``sizes=True``): ``n_queries`` uniforms in (0, 1) from a separate
      child stream (``SeedSequence(seed, spawn_key=(1,))``); :meth:`sizes` maps them through a
      :class:`SizeDistribution`'s inverse CDF, so a design's query sizes are a deterministic,
      monotone function of the stream.

    Arrival conventions:

    - ``"exponential"``: :meth:`arrivals_s` is ``cumsum(unit_gaps * (1 / qps))``, bit for bit
      what ``poisson_arrivals(n, qps=qps, seed=seed)`` returns. One stream at every ``qps`` is
      the same arrival pattern rescaled in time, so latency is monotone in ``qps`` (see
      :func:`max_qps_batch`).
    - ``"recpipe"``: integer-millisecond Poisson gaps are not scale invariant, so the gaps are
      drawn afresh for each ``qps`` from a seed derived from ``(seed, qps)``. The derivation is
      the identity, ``seed`` itself, at every ``qps``: the arrivals are then exactly
      ``poisson_arrivals(n, qps=qps, seed=seed, convention="recpipe")``, the same numbers the
      scalar pipeline simulates, and every ``qps`` reads the same underlying bit stream.
      Latency is deterministic but not guaranteed monotone in ``qps`` under this convention.

    The same ``(n_queries, seed, convention)`` gives the same stream in any process, so a
    design's objectives do not depend on which worker or trial evaluates it.
    """

    n_queries: int
    seed: int
    convention: Literal["exponential", "recpipe"] = "exponential"
    sizes_enabled: bool = True
    unit_gaps: np.ndarray = field(init=False, repr=False)
    size_quantiles: np.ndarray | None = field(init=False, repr=False)
    _unit_arrivals: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = _check_positive_int(self.n_queries, "n_queries")
        seed = as_int(self.seed)
        if seed is None or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.convention not in _CONVENTIONS:
            raise ValueError(
                f"unknown convention {self.convention!r}; expected one of {_CONVENTIONS}"
            )
        gaps = np.random.default_rng(seed).standard_exponential(n - 1)
        unit = np.zeros(n, dtype=np.float64)
        np.cumsum(gaps, out=unit[1:])
        quantiles = None
        if self.sizes_enabled:
            child = np.random.SeedSequence(seed, spawn_key=(_SIZE_STREAM,))
            # (0, 1) open: 1 - [0, 1) is (0, 1], and the clip keeps the normal inverse finite.
            quantiles = np.clip(
                1.0 - np.random.default_rng(child).random(n), _TINY_QUANTILE, 1.0 - _TINY_QUANTILE
            )
            quantiles.flags.writeable = False
        gaps.flags.writeable = False
        unit.flags.writeable = False
        object.__setattr__(self, "n_queries", n)
        object.__setattr__(self, "seed", seed)
        object.__setattr__(self, "unit_gaps", gaps)
        object.__setattr__(self, "size_quantiles", quantiles)
        object.__setattr__(self, "_unit_arrivals", unit)

    def arrivals_s(self, qps: float) -> np.ndarray:
        """Arrival times (seconds, sorted, the first at 0) at ``qps``; shape ``(n_queries,)``."""
        rate = _check_positive_real(qps, "qps")
        if self.convention == "recpipe":
            return poisson_arrivals(self.n_queries, qps=rate, seed=self.seed, convention="recpipe")
        arrivals = np.zeros(self.n_queries, dtype=np.float64)
        np.cumsum(self.unit_gaps * (1.0 / rate), out=arrivals[1:])
        return arrivals

    def arrivals_batch_s(self, qps: npt.ArrayLike) -> np.ndarray:
        """Arrival times at each of ``qps`` (shape ``(N,)``): shape ``(N, n_queries)``.

        Row ``i`` equals ``arrivals_s(qps[i])`` bit for bit.
        """
        rates = np.asarray(qps, dtype=np.float64)
        if rates.ndim != 1 or not (np.all(np.isfinite(rates)) and np.all(rates > 0.0)):
            raise ValueError("qps must be a 1-D array of positive finite numbers")
        if self.convention == "recpipe":
            if rates.size == 0:
                return np.zeros((0, self.n_queries))
            return np.stack([self.arrivals_s(float(r)) for r in rates])
        out = np.zeros((rates.size, self.n_queries), dtype=np.float64)
        np.cumsum(self.unit_gaps[None, :] * (1.0 / rates)[:, None], axis=1, out=out[:, 1:])
        return out

    def _arrivals_t(self, rates: np.ndarray) -> np.ndarray:
        """``arrivals_batch_s(rates).T`` as a C-contiguous ``(n_queries, N)`` array, same bits."""
        if self.convention == "recpipe":
            return np.ascontiguousarray(self.arrivals_batch_s(rates).T)
        out = np.zeros((self.n_queries, rates.size), dtype=np.float64)
        np.multiply(self.unit_gaps[:, None], (1.0 / rates)[None, :], out=out[1:])
        rows, add = list(out), np.add
        for n in range(2, self.n_queries):  # cumsum down the columns, one row per call
            add(rows[n - 1], rows[n], out=rows[n])
        return out

    def sizes(self, dist: SizeDistribution) -> np.ndarray:
        """Query sizes (int64, ``(n_queries,)``): ``dist``'s inverse CDF at ``size_quantiles``.

        Rounded and clipped as :func:`query_sizes` does. Not the same draws as
        ``query_sizes(n, dist, seed=seed)`` (that samples with numpy's generators); the same
        distribution, and monotone in the quantile, so larger designs see the same big queries.
        Empirical samples without percentiles are picked uniformly: quantile ``u`` takes
        ``samples[floor(u * len(samples))]``.
        """
        if not isinstance(dist, SizeDistribution):
            raise TypeError(f"dist must be a SizeDistribution, got {type(dist).__name__}")
        u = self.size_quantiles
        if u is None:
            raise ValueError("this LoadStream was built with sizes_enabled=False")
        if dist.kind == "fixed":
            draws = np.full(u.size, float(dist.value))  # type: ignore[arg-type]
        elif dist.kind in ("normal", "lognormal"):
            z = _normal_inverse_cdf(u)
            if dist.kind == "normal":
                draws = float(dist.mean) + float(dist.std) * z  # type: ignore[arg-type]
            else:
                sigma = float(dist.sigma)  # type: ignore[arg-type]
                if dist.median is not None:
                    mu = math.log(dist.median)
                else:
                    mu = math.log(dist.mean) - 0.5 * sigma * sigma  # type: ignore[arg-type]
                draws = np.exp(mu + sigma * z)
        else:
            samples = np.asarray(dist.samples, dtype=np.float64)
            if dist.percentiles is None:
                index = np.minimum((u * samples.size).astype(np.int64), samples.size - 1)
                draws = samples[index]
            else:
                pcts = np.asarray(dist.percentiles, dtype=np.float64)
                draws = np.interp(u * 100.0, pcts, samples)
        upper = np.inf if dist.max_items is None else float(dist.max_items)
        return np.clip(np.rint(draws), float(dist.min_items), upper).astype(np.int64)


def _normal_inverse_cdf(u: np.ndarray) -> np.ndarray:
    """Standard normal quantiles of ``u`` in (0, 1) (stdlib ``NormalDist``, Wichura's AS241)."""
    inv_cdf = statistics.NormalDist().inv_cdf
    return np.fromiter((inv_cdf(x) for x in u.tolist()), dtype=np.float64, count=u.size)


# --------------------------------------------------------------------------- batch simulation


def simulate_batch(
    arrivals_s: npt.ArrayLike,
    service_s: npt.ArrayLike,
    servers: npt.ArrayLike,
    *,
    wake_s: npt.ArrayLike | None = None,
    wake_tau_s: npt.ArrayLike | None = None,
) -> np.ndarray:
    """End-to-end latency (seconds) of every query in ``N`` designs at once: shape ``(N, Q)``.

    ``arrivals_s``: ``(Q,)`` shared by all designs, or ``(N, Q)``; any order (FIFO by arrival,
    ties by query index), though :class:`LoadStream` arrivals are sorted.
    ``service_s``: ``(N, P)``, one constant service time per pool, or ``(N, Q, P)`` per query.
    ``servers``: ``(N, P)`` (or ``(P,)`` for all designs) integers >= 1; ``P`` pools in series.

    Row ``i`` equals ``simulate_pipeline(arrivals_i, service_i, servers[i]).latency_s`` bit
    for bit: every path below performs the reference's floating-point operations in the same
    order (the tests check 400 random designs to ``rtol=1e-12``; the differences are zero).

    - **Pools with ``servers >= Q``** never queue: start = arrival.
    - **One server** (either form of service): the blockwise Lindley closed form of
      :func:`simulate_pipeline`, on 2-D arrays.
    - **c servers, constant service ``S``**: with equal service times FIFO query ``n`` takes the
      server freed by query ``n - c``, so ``start_n = max(a_n, start_{n-c} + S)`` (``c``
      interleaved Lindley recursions; the heap's minimum is exactly ``start_{n-c} + S``).
      Designs are grouped by ``c``, the query axis is made the slow one, and each numpy call
      advances a whole group by ``c`` queries (``Q / c`` calls per group). Starts stay
      non-decreasing, so no pool reorders queries and the arrivals need no re-sorting.
    - **c servers, per-query service**: a loop over queries, vectorised across designs, that
      keeps each design's server free times sorted in an ``(c_max + 1, N)`` array (unused
      servers padded with ``+inf``): the query starts at ``max(arrival, free[0])`` and its
      departure is merged back in order. Departures can overtake, so before each pool the
      stage arrivals are re-sorted (stable, in query-index order, exactly as
      :func:`simulate_pipeline` does) for the designs whose order changed.

    - **Wake-up** (``wake_s``, ``(N, P)`` seconds >= 0, or ``None``): a query that finds a
      server of the pool idle, waiting for ``gap`` seconds, is served ``wake_s x (1 -
      exp(-gap / wake_tau_s))`` longer (``wake_tau_s`` ``(N, P)``, default 0: the whole
      ``wake_s`` after any wait). A deployed engine blocked on its queue wakes up, with caches
      the longer it slept the colder, before it works; a queued query finds it running. Pools
      then take the per-query free-server loop for every server count. All-zero ``wake_s`` is
      the same as none.

    Cost, measured on 2 shared CPU cores (N = 1000 designs x Q = 1000 queries x 2 pools of
    1-8 servers): constant service ~15 ms with shared arrivals, ~20 ms with per-design
    arrivals; per-query service ~90 ms. Unsorted arrivals with constant service take the
    per-query path.
    """
    arrivals, service, counts, constant = _check_batch(arrivals_s, service_s, servers)
    n_designs, n_pools = counts.shape
    if n_designs == 0:
        return np.zeros((0, arrivals.shape[-1]), dtype=np.float64)
    wake = _check_wake(wake_s, wake_tau_s, n_designs, n_pools)
    if wake is not None:
        n_queries = arrivals.shape[-1]
        arr2 = np.broadcast_to(arrivals, (n_designs, n_queries))
        if constant:
            service = np.broadcast_to(service[:, None, :], (n_designs, n_queries, n_pools))
        stage = arr2
        for k in range(n_pools):
            s_k = np.array(service[:, :, k], dtype=np.float64, copy=True)
            w_k = (wake[0][:, k], wake[1][:, k]) if np.any(wake[0][:, k] > 0) else None
            start = _general_pool_starts(stage, s_k, counts[:, k], shared=False, wake=w_k)
            stage = start + s_k
        return stage - arr2
    if constant and bool(np.all(_rows_sorted(arrivals))):
        a_t = arrivals if arrivals.ndim == 1 else np.ascontiguousarray(arrivals.T)
        departure_t, perm = _constant_departures_t(a_t, service, counts)
        latency = departure_t.T[np.argsort(perm)]
        latency -= arrivals
        return latency
    if constant:
        # Unsorted input: the general path replays simulate_pipeline's re-sorting (and its
        # tie-breaking by query index) exactly.
        shape = (n_designs, arrivals.shape[-1], n_pools)
        service = np.broadcast_to(service[:, None, :], shape)
    shared = arrivals.ndim == 1
    arr2 = np.broadcast_to(arrivals, (n_designs, arrivals.shape[-1])) if shared else arrivals
    stage = arr2
    for k in range(n_pools):
        s_k = service[:, :, k]
        stage = _general_pool_starts(stage, s_k, counts[:, k], shared=shared and k == 0) + s_k
    return stage - arr2


def _constant_departures_t(
    a_t: np.ndarray, service: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Constant service per pool, arrivals sorted; queries along axis 0.

    ``a_t`` is ``(Q,)`` (shared) or ``(Q, N)``. Before each pool the design columns are
    reordered so designs with equal server counts are adjacent, and each group runs
    :func:`_chain_departures` on a contiguous copy of its columns. Returns the departures
    from the last pool, ``(Q, N)``, and ``perm``: column ``j`` belongs to design ``perm[j]``.
    """
    n_queries = a_t.shape[0]
    n_designs, n_pools = counts.shape
    shared = a_t.ndim == 1
    clipped = np.minimum(counts, n_queries)
    perm = np.arange(n_designs)
    stage = a_t
    for k in range(n_pools):
        c_now = clipped[perm, k]
        order = np.argsort(c_now, kind="stable")
        perm = perm[order]
        c_now = c_now[order]
        s_now = service[perm, k]
        departure = np.empty((n_queries, n_designs), dtype=np.float64)
        edges = [0, *(np.flatnonzero(np.diff(c_now)) + 1).tolist(), n_designs]
        if not (shared and k == 0):
            stage = np.take(stage, order, axis=1)
        for lo, hi in zip(edges[:-1], edges[1:], strict=False):
            if shared and k == 0:
                group = np.repeat(a_t[:, None], hi - lo, axis=1)
            else:
                group = np.ascontiguousarray(stage[:, lo:hi])
            departure[:, lo:hi] = _chain_departures(group, s_now[lo:hi], int(c_now[lo]))
        stage = departure
    return stage, perm


def _chain_departures(a: np.ndarray, s: np.ndarray, c: int) -> np.ndarray:
    """Departures of a c-server FIFO pool, constant service ``s`` per column: ``(Q, m)``.

    ``a`` (Q, m), C-contiguous, holds arrivals sorted down each column (it is overwritten).
    One server: :func:`_lindley_starts`' closed form. c servers: with equal service times the
    server that frees first is the one query ``n - c`` took, so
    ``start_n = max(a_n, start_{n-c} + s)``, the heap's own operations, for one block of
    ``c`` queries (a contiguous row of ``c * m`` values) per numpy call. Either way starts
    are non-decreasing, so the pool never reorders queries.
    """
    n_queries, m = a.shape
    if c >= n_queries:
        a += s
        return a
    if c == 1:
        rows = np.ascontiguousarray(a.T)
        start = _lindley_starts_2d(rows, np.broadcast_to(s[:, None], rows.shape))
        start += s[:, None]
        return np.ascontiguousarray(start.T)
    start = np.empty_like(a)
    start[:c] = a[:c]  # the first c queries start on arrival
    full = n_queries // c
    s_row = np.tile(s, c)
    tmp = np.empty(c * m, dtype=np.float64)
    rows_a = list(a[: full * c].reshape(full, c * m))
    rows_s = list(start[: full * c].reshape(full, c * m))
    add, maximum = np.add, np.maximum
    for j in range(1, full):
        add(rows_s[j - 1], s_row, out=tmp)
        maximum(rows_a[j], tmp, out=rows_s[j])
    lo = full * c
    if lo < n_queries:
        maximum(a[lo:], start[lo - c : n_queries - c] + s, out=start[lo:])
    start += s
    return start


def _check_wake(
    wake_s: npt.ArrayLike | None, wake_tau_s: npt.ArrayLike | None, n_designs: int, n_pools: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """(``wake_s``, ``wake_tau_s``) as ``(N, P)`` arrays, or ``None`` when there is no
    wake-up (absent or all zero)."""
    if wake_s is None:
        return None
    out = []
    tau = 0.0 if wake_tau_s is None else wake_tau_s
    for name, value in (("wake_s", wake_s), ("wake_tau_s", tau)):
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape not in ((), (n_pools,), (n_designs, n_pools)):
            raise ValueError(f"{name} must have shape (N, P) = ({n_designs}, {n_pools}) or (P,)")
        if not (np.all(np.isfinite(arr)) and np.all(arr >= 0.0)):
            raise ValueError(f"{name} must be finite and non-negative")
        out.append(np.broadcast_to(arr, (n_designs, n_pools)))
    if not np.any(out[0] > 0):
        return None
    return out[0], out[1]


def _check_batch(
    arrivals_s: npt.ArrayLike, service_s: npt.ArrayLike, servers: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    arrivals = np.asarray(arrivals_s, dtype=np.float64)
    if arrivals.ndim not in (1, 2) or arrivals.shape[-1] == 0:
        raise ValueError(f"arrivals_s must have shape (Q,) or (N, Q), got {arrivals.shape}")
    if not np.all(np.isfinite(arrivals)):
        raise ValueError("arrivals_s must be finite")
    service = np.asarray(service_s, dtype=np.float64)
    if service.ndim not in (2, 3) or service.shape[-1] == 0:
        raise ValueError(f"service_s must have shape (N, P) or (N, Q, P), got {service.shape}")
    n_designs, n_pools = service.shape[0], service.shape[-1]
    n_queries = arrivals.shape[-1]
    if service.ndim == 3 and service.shape[1] != n_queries:
        raise ValueError(f"service_s has {service.shape[1]} queries, arrivals_s has {n_queries}")
    if arrivals.ndim == 2 and arrivals.shape[0] != n_designs:
        raise ValueError(f"arrivals_s has {arrivals.shape[0]} designs, service_s {n_designs}")
    if service.size and not (service.min() >= 0.0 and math.isfinite(service.max())):
        raise ValueError("service_s must be finite and non-negative")
    raw = np.asarray(servers)
    if raw.dtype.kind not in "iu" and not (
        raw.dtype.kind == "f" and np.all(np.isfinite(raw)) and np.all(raw == np.round(raw))
    ):
        raise ValueError("servers must hold integers >= 1")
    if raw.shape not in ((n_pools,), (n_designs, n_pools)):
        raise ValueError(f"servers must have shape (N, P) = ({n_designs}, {n_pools}) or (P,)")
    counts = np.broadcast_to(raw.astype(np.int64), (n_designs, n_pools))
    if counts.size and counts.min() < 1:
        raise ValueError("servers must hold integers >= 1")
    return arrivals, service, counts, service.ndim == 2


def _rows_sorted(a: np.ndarray) -> np.ndarray:
    """Whether each row (or the one 1-D array) is non-decreasing."""
    if a.shape[-1] < 2:
        return np.ones(a.shape[:-1], dtype=bool)
    return np.all(a[..., 1:] >= a[..., :-1], axis=-1)


def _groups(counts: np.ndarray, n_queries: int) -> list[tuple[int, np.ndarray | None]]:
    """Designs grouped by server count (``None`` rows: all of them); ``c >= Q`` merged."""
    c = np.minimum(counts, n_queries)
    values = np.unique(c)
    if values.size == 1:
        return [(int(values[0]), None)]
    return [(int(v), np.flatnonzero(c == v)) for v in values]


def _lindley_starts_2d(a: np.ndarray, s: np.ndarray, block: int = _LINDLEY_BLOCK) -> np.ndarray:
    """:func:`_lindley_starts` on each row of ``a`` and ``s`` (same operations, same order)."""
    m, n = a.shape
    start = np.empty((m, n), dtype=np.float64)
    d_prev = np.full(m, -math.inf)
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        c_before = np.empty((m, hi - lo), dtype=np.float64)
        c_before[:, 0] = 0.0
        np.cumsum(s[:, lo : hi - 1], axis=1, out=c_before[:, 1:])
        x = a[:, lo:hi] - c_before
        np.maximum(x[:, 0], d_prev, out=x[:, 0])
        np.maximum.accumulate(x, axis=1, out=x)
        x += c_before
        np.maximum(x, a[:, lo:hi], out=x)
        start[:, lo:hi] = x
        d_prev = x[:, -1] + s[:, hi - 1]
    return start


def _free_server_starts(
    a: np.ndarray,
    s: np.ndarray,
    counts: np.ndarray,
    wake: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """c-server FIFO with per-query service, looping over queries across all rows at once.

    ``wake`` (per row: seconds, time constant): a query that finds a server idle for ``gap``
    (it arrives after the earliest free time) is served for ``s + wake x (1 - exp(-gap /
    tau))`` (the whole wake-up where tau is 0); ``s`` (a writable array) then receives each
    query's effective service.

    Row ``i`` keeps its ``counts[i]`` server free times sorted down a column of an
    ``(c_max + 1, m)`` array, padded with ``+inf``. Each query starts at
    ``max(arrival, free[0])`` (the heap's minimum) and its departure is inserted back in
    order, ``free'[r] = max(free[r], min(free[r + 1], departure))``: two element-wise calls on
    the whole array per query, the same values :func:`_heap_starts` computes.
    """
    m, n_queries = a.shape
    width = int(counts.max())
    free = np.full((width + 1, m), math.inf)
    free[:width][np.arange(width)[:, None] < counts[None, :]] = -math.inf
    tmp = np.empty((width, m), dtype=np.float64)
    a_t = np.ascontiguousarray(a.T)
    # with a wake-up term the effective service is written into this array: a copy
    s_t = np.array(s.T, order="C", copy=True) if wake is not None else np.ascontiguousarray(s.T)
    start_t = np.empty((n_queries, m), dtype=np.float64)
    maximum, minimum, add = np.maximum, np.minimum, np.add
    head, tail, below = free[0], free[1:], free[1:width]
    done = np.empty(m, dtype=np.float64)
    if wake is not None:
        height, tau = wake
        stepped = tau <= 0
        rate = np.where(stepped, 0.0, -1.0 / np.where(stepped, 1.0, tau))
        gap = np.empty(m, dtype=np.float64)
        extra = np.empty(m, dtype=np.float64)
    for n in range(n_queries):
        begin = start_t[n]
        if wake is not None:  # a query that finds a server idle pays the wake-up
            np.subtract(a_t[n], head, out=gap)
            np.maximum(gap, 0.0, out=gap)
            with np.errstate(invalid="ignore"):  # an unused server: gap inf x rate 0
                np.multiply(gap, rate, out=extra)
            np.expm1(extra, out=extra)
            np.negative(extra, out=extra)  # 1 - exp(-gap / tau): 0 at gap 0, 1 at gap inf
            np.nan_to_num(extra, copy=False, nan=1.0)
            extra[stepped & (gap > 0)] = 1.0
            extra *= height
            add(s_t[n], extra, out=s_t[n])
        maximum(a_t[n], head, out=begin)
        add(begin, s_t[n], out=done)
        minimum(tail, done, out=tmp)
        maximum(tmp[1:], below, out=tmp[1:])
        free[:width] = tmp
    if wake is not None:
        s[...] = s_t.T
    return start_t.T


def _general_pool_starts(
    a: np.ndarray,
    s: np.ndarray,
    counts: np.ndarray,
    *,
    shared: bool,
    wake: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Start times at one pool with per-query service; rows of ``a`` in query-index order.

    Rows not sorted by stage arrival are stably sorted first and the starts scattered back,
    as :func:`simulate_pipeline` does. With ``wake`` (per row) every server count takes the
    free-server loop, which adds the wake-up to queries that find a server idle and writes the
    effective service into ``s`` (writable, in query-index order).
    """
    if wake is not None:
        return _wake_pool_starts(a, s, counts, wake)
    m, n_queries = a.shape
    if shared:
        in_order = np.full(m, bool(_rows_sorted(a[0])))
    else:
        in_order = _rows_sorted(a)
    moved = np.flatnonzero(~in_order)
    order = None
    if moved.size:
        order = np.argsort(a[moved], axis=1, kind="stable")
        a = a.copy()
        s = np.array(s, copy=True)
        a[moved] = np.take_along_axis(a[moved], order, axis=1)
        s[moved] = np.take_along_axis(s[moved], order, axis=1)
    start = np.empty((m, n_queries), dtype=np.float64)
    for c, rows in _groups(counts, n_queries):
        a_g = a if rows is None else a[rows]
        s_g = s if rows is None else s[rows]
        if c >= n_queries:
            st = a_g
        elif c == 1:
            st = _lindley_starts_2d(a_g, s_g)
        else:
            c_g = counts if rows is None else counts[rows]
            st = _free_server_starts(a_g, s_g, np.minimum(c_g, n_queries))
        if rows is None:
            start[...] = st
        else:
            start[rows] = st
    if order is not None:
        sorted_starts = start[moved]
        unsorted = np.empty_like(sorted_starts)
        np.put_along_axis(unsorted, order, sorted_starts, axis=1)
        start[moved] = unsorted
    return start


def _wake_pool_starts(
    a: np.ndarray, s: np.ndarray, counts: np.ndarray, wake: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """:func:`_general_pool_starts` with a wake-up term: rows sorted by stage arrival
    (stably), every server count through :func:`_free_server_starts`, starts and effective
    service scattered back to query-index order (``s`` is overwritten)."""
    order = np.argsort(a, axis=1, kind="stable")
    a_sorted = np.take_along_axis(a, order, axis=1)
    s_sorted = np.take_along_axis(s, order, axis=1)
    n_queries = a.shape[1]
    start_sorted = _free_server_starts(a_sorted, s_sorted, np.minimum(counts, n_queries), wake)
    start = np.empty_like(start_sorted)
    np.put_along_axis(start, order, start_sorted, axis=1)
    np.put_along_axis(s, order, s_sorted, axis=1)
    return start


# --------------------------------------------------------------------------- batch percentiles


def tail_latency_batch(
    latency_s: npt.ArrayLike,
    *,
    warmup: int = 0,
    percentiles: Sequence[float] = _REPORTED_PERCENTILES,
    arrivals_s: npt.ArrayLike | None = None,
) -> np.ndarray:
    """Latency percentiles per design after a warm-up: shape ``(N, len(percentiles))``.

    Same definition as :func:`summarize`: the first ``warmup`` queries by arrival (ties by
    index) are dropped, then ``np.percentile`` (linear interpolation) over the rest, so
    ``tail_latency_batch(lat, warmup=w)[i]`` equals ``(p50, p95, p99)`` of
    ``summarize(run_i, warmup=w)``. Columns are taken to be in arrival order (as with
    :class:`LoadStream` arrivals); pass ``arrivals_s`` (``(Q,)`` or ``(N, Q)``) otherwise.
    """
    latency = _measured(latency_s, warmup, arrivals_s)
    pcts = np.asarray(percentiles, dtype=np.float64)
    if pcts.ndim != 1 or pcts.size == 0 or np.any((pcts < 0) | (pcts > 100)):
        raise ValueError("percentiles must be a non-empty sequence of numbers in [0, 100]")
    return np.percentile(latency, pcts, axis=1).T


def _measured(
    latency_s: npt.ArrayLike, warmup: int, arrivals_s: npt.ArrayLike | None
) -> np.ndarray:
    latency = np.asarray(latency_s, dtype=np.float64)
    if latency.ndim != 2 or latency.shape[1] == 0:
        raise ValueError(f"latency_s must have shape (N, Q), got {latency.shape}")
    count = as_int(warmup)
    if count is None or count < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
    if count >= latency.shape[1]:
        raise ValueError(
            f"warmup ({count}) must be below the number of queries ({latency.shape[1]})"
        )
    if arrivals_s is None or count == 0:
        return latency[:, count:]
    arrivals = np.asarray(arrivals_s, dtype=np.float64)
    if arrivals.shape not in (latency.shape[1:], latency.shape):
        raise ValueError(f"arrivals_s must have shape (Q,) or (N, Q), got {arrivals.shape}")
    keep = np.argsort(arrivals, axis=-1, kind="stable")[..., count:]
    if keep.ndim == 1:
        return latency[:, keep]
    return np.take_along_axis(latency, keep, axis=1)


def _percentile_meets(
    latency: np.ndarray, percentile: float, sla_s: np.ndarray, *, axis: int = 1
) -> np.ndarray:
    """``np.percentile(latency, percentile, axis=axis) <= sla_s`` (``axis``: the queries).

    With ``h = (n - 1) p / 100`` and ``lo = floor(h)``, the percentile is numpy's
    interpolation between the order statistics ``x_lo <= x_lo+1``, which never leaves
    ``[x_lo, x_lo+1]`` (numpy's ``_lerp`` is bounded in floating point). So with ``k`` the
    number of latencies ``<= sla``: ``k <= lo`` misses, ``k >= lo + 2`` meets, and only rows
    with ``k == lo + 1`` need the exact percentile.
    """
    n = latency.shape[axis]
    lo = math.floor((n - 1) * (percentile / 100.0))  # numpy's virtual index, same rounding
    limit = sla_s[:, None] if axis == 1 else sla_s[None, :]
    hits = np.count_nonzero(latency <= limit, axis=axis)
    ok = hits >= lo + 2
    unsure = np.flatnonzero(hits == lo + 1)
    if unsure.size:
        exact = np.percentile(np.take(latency, unsure, axis=1 - axis), percentile, axis=axis)
        ok[unsure] = exact <= sla_s[unsure]
    return ok


# --------------------------------------------------------------------------- screening bounds


def stability_limit_batch_qps(service_s: npt.ArrayLike, servers: npt.ArrayLike) -> np.ndarray:
    """:func:`stability_limit_qps` per design: ``min_k servers[k] / mean_service_s[k]`` (N,).

    ``service_s`` ``(N, P)`` or ``(N, Q, P)`` (mean over queries); ``inf`` when every pool
    has zero service. At or above it the simulated tail grows with the number of queries.
    """
    service = np.asarray(service_s, dtype=np.float64)
    if service.ndim not in (2, 3):
        raise ValueError(f"service_s must have shape (N, P) or (N, Q, P), got {service.shape}")
    mean = service if service.ndim == 2 else service.mean(axis=1)
    counts = np.broadcast_to(np.asarray(servers, dtype=np.float64), mean.shape)
    with np.errstate(divide="ignore"):
        return np.min(counts / mean, axis=1)


def latency_lower_bound_s(
    service_s: npt.ArrayLike,
    *,
    percentile: float | None = None,
    warmup: int = 0,
    rel_slack: float = _BOUND_SLACK,
) -> np.ndarray:
    """A lower bound on each design's simulated latency percentile, at any load: shape (N,).

    Why it is valid: a query's latency is its waits plus its services, waits are >= 0, so
    ``latency_n >= T_n = sum_k service_n[k]`` for every query. Sorting preserves an
    elementwise inequality between two samples, so every order statistic, and hence every
    linearly interpolated percentile, of the latencies is >= the same percentile of ``T``.

    ``service_s`` ``(N, P)``: the bound is ``sum_k S[k]``, whatever the percentile.
    ``service_s`` ``(N, Q, P)``: the ``percentile`` of ``T`` over the measured queries
    (columns ``warmup:``, i.e. queries in arrival order as :class:`LoadStream` makes them), or
    ``min_n T_n`` when ``percentile`` is None (a bound for every query and any percentile).

    The bound is reduced by ``rel_slack`` (relative, 1e-6 by default) because the simulation
    computes latency as ``departure - arrival`` in float64, which for an unqueued query can
    round a few ulps of the arrival time below the exact sum of its services.
    """
    service = np.asarray(service_s, dtype=np.float64)
    if service.ndim == 2:
        total = service.sum(axis=1)
    elif service.ndim == 3:
        per_query = service.sum(axis=2)
        if percentile is None:
            total = per_query.min(axis=1)
        else:
            total = tail_latency_batch(per_query, warmup=warmup, percentiles=(percentile,))[:, 0]
    else:
        raise ValueError(f"service_s must have shape (N, P) or (N, Q, P), got {service.shape}")
    return total * (1.0 - float(rel_slack))


def max_qps_upper_bound(
    service_s: npt.ArrayLike, servers: npt.ArrayLike, *, cap_fraction: float = _CAP_FRACTION
) -> np.ndarray:
    """The most :func:`max_qps_batch` can return per design: ``cap_fraction`` x stability limit.

    Valid by construction: the search never tries a load above this cap.
    """
    return float(cap_fraction) * stability_limit_batch_qps(service_s, servers)


def screen(
    optimistic: npt.ArrayLike,
    front: npt.ArrayLike,
    *,
    maximize: Sequence[bool] | None = None,
) -> np.ndarray:
    """Which designs could still reach the Pareto front: a boolean mask of shape (N,).

    ``optimistic`` ``(N, M)``: for each design a bound on each objective that its true value
    cannot beat (for a minimised objective a lower bound, e.g. :func:`latency_lower_bound_s`;
    for a maximised one an upper bound, e.g. :func:`max_qps_upper_bound`; an exact value is
    also a bound). ``front`` ``(K, M)``: objective vectors already found. ``maximize[m]`` says
    objective ``m`` is maximised (default: all minimised).

    A design is dropped when some front point is at least as good as its optimistic vector in
    every objective and strictly better in one: its true vector, no better than the optimistic
    one, is then dominated too. Ties are kept. Simulate only the designs this returns True for.
    """
    bound = np.asarray(optimistic, dtype=np.float64)
    points = np.asarray(front, dtype=np.float64)
    if bound.ndim != 2:
        raise ValueError(f"optimistic must have shape (N, M), got {bound.shape}")
    if points.size == 0:
        return np.ones(bound.shape[0], dtype=bool)
    if points.ndim != 2 or points.shape[1] != bound.shape[1]:
        raise ValueError(f"front must have shape (K, {bound.shape[1]}), got {points.shape}")
    if maximize is not None:
        if len(maximize) != bound.shape[1]:
            raise ValueError(f"maximize needs {bound.shape[1]} entries, got {len(maximize)}")
        sign = np.where(np.asarray(maximize, dtype=bool), -1.0, 1.0)
        bound, points = bound * sign, points * sign
    keep = np.ones(bound.shape[0], dtype=bool)
    chunk = max(1, 2**22 // max(1, points.size))
    for lo in range(0, bound.shape[0], chunk):
        b = bound[lo : lo + chunk, None, :]
        no_worse = np.all(points[None] <= b, axis=2)
        better = np.any(points[None] < b, axis=2)
        keep[lo : lo + chunk] = ~np.any(no_worse & better, axis=1)
    return keep


# --------------------------------------------------------------------------- batch capacity search


def max_qps_batch(
    stream: LoadStream,
    service_s: npt.ArrayLike,
    servers: npt.ArrayLike,
    *,
    sla_s: float | npt.ArrayLike,
    percentile: float = 95,
    warmup: int = 0,
    rel_tol: float = 0.02,
    cap_fraction: float = _CAP_FRACTION,
    low_fraction: float = 1e-3,
    wake_s: npt.ArrayLike | None = None,
    wake_tau_s: npt.ArrayLike | None = None,
) -> np.ndarray:
    """Highest QPS per design whose ``percentile`` latency meets ``sla_s``: shape (N,).

    ``service_s`` ``(N, P)`` or ``(N, Q, P)`` and ``servers`` ``(N, P)`` as in
    :func:`simulate_batch`; every load is simulated on ``stream`` (``Q = stream.n_queries``),
    percentiles as :func:`tail_latency_batch` (first ``warmup`` queries dropped). ``sla_s`` is
    one number or one per design; ``wake_s``, ``wake_tau_s`` as in :func:`simulate_batch`.

    1. **Screen:** designs whose :func:`latency_lower_bound_s` already exceeds the SLA get 0
       without simulation (the simulation could only confirm it).
    2. **Cap:** simulate at ``cap = cap_fraction x`` the stability limit; designs meeting the
       SLA there return ``cap`` (the scalar path's ``qps_high``).
    3. **Floor:** simulate at ``low_fraction x`` the limit; designs missing the SLA even there
       return 0.
    4. **Bisect** in log space between the last load met and the first missed, all designs in
       parallel (each step one :func:`simulate_batch` call on the undecided designs), until
       ``hi / lo <= 1 + rel_tol``; return ``lo``. With the defaults that is 9 steps, 11 batch
       simulations in all.

    No noise rule: with ``convention="exponential"`` every load replays the same stream
    rescaled in time (common random numbers). When no pool has both several servers and
    per-query service (constant service per pool, or single-server pools), the pipeline is a
    max-plus linear system: ``latency_n = max_{m<=n} (a_m - a_n + L_{mn})`` with ``L`` the
    longest service path, independent of the arrivals. Scaling ``a = A / qps`` makes every
    ``a_m - a_n`` (``<= 0``) grow with ``qps``, so every query's latency, hence every
    percentile, is non-decreasing in ``qps`` (up to float rounding of ``departure - arrival``,
    a few ulps of the arrival time), and the bisection brackets the exact crossing of this
    stream. Otherwise (overtaking in a c-server pool, or the ``"recpipe"`` convention)
    the result is still deterministic, but monotonicity is not guaranteed in theory.
    """
    if not isinstance(stream, LoadStream):
        raise TypeError(f"stream must be a LoadStream, got {type(stream).__name__}")
    service = np.asarray(service_s, dtype=np.float64)
    probe = np.zeros(stream.n_queries)
    _, service, counts, _ = _check_batch(probe, service, servers)
    n_designs = service.shape[0]
    pct = _as_real(percentile)
    if pct is None or not 0.0 <= pct <= 100.0:
        raise ValueError(f"percentile must be a number in [0, 100], got {percentile!r}")
    sla = np.broadcast_to(np.asarray(sla_s, dtype=np.float64), (n_designs,))
    if not (np.all(np.isfinite(sla)) and np.all(sla > 0.0)):
        raise ValueError("sla_s must be positive and finite")
    tol = _check_positive_real(rel_tol, "rel_tol")
    cap_frac = _check_positive_real(cap_fraction, "cap_fraction")
    low_frac = _check_positive_real(low_fraction, "low_fraction")
    if not low_frac < cap_frac <= 1.0:
        raise ValueError("need 0 < low_fraction < cap_fraction <= 1")
    count = as_int(warmup)
    if count is None or not 0 <= count < stream.n_queries:
        raise ValueError(f"warmup must be an integer in [0, {stream.n_queries}), got {warmup!r}")

    result = np.zeros(n_designs, dtype=np.float64)
    if n_designs == 0:
        return result
    limit = stability_limit_batch_qps(service, counts)
    bound = latency_lower_bound_s(service, percentile=pct, warmup=count)
    never = np.isinf(limit)  # no service anywhere: zero latency at any load
    result[never & (bound <= sla)] = math.inf
    active = np.flatnonzero(~never & (bound <= sla))

    wake = _check_wake(wake_s, wake_tau_s, n_designs, service.shape[-1])
    constant = service.ndim == 2 and wake is None

    def meets(rows: np.ndarray, qps: np.ndarray) -> np.ndarray:
        if rows.size == 0:
            return np.zeros(0, dtype=bool)
        if not constant:
            latency = simulate_batch(
                stream.arrivals_batch_s(qps),
                service[rows],
                counts[rows],
                wake_s=None if wake is None else wake[0][rows],
                wake_tau_s=None if wake is None else wake[1][rows],
            )
            return _percentile_meets(latency[:, count:], pct, sla[rows])
        # simulate_batch's constant-service path without the checks and the transposes
        a_t = stream._arrivals_t(qps)
        departure, perm = _constant_departures_t(a_t, service[rows], counts[rows])
        latency = departure[count:]
        latency -= a_t[count:, perm]
        ok = np.empty(rows.size, dtype=bool)
        ok[perm] = _percentile_meets(latency, pct, sla[rows][perm], axis=0)
        return ok

    result[active] = bisect_max_qps(
        meets,
        limit[active],
        rows=active,
        cap_fraction=cap_frac,
        low_fraction=low_frac,
        rel_tol=tol,
    )
    return result


def bisect_max_qps(
    meets: Callable[[np.ndarray, np.ndarray], np.ndarray],
    limit_qps: npt.ArrayLike,
    *,
    rows: npt.ArrayLike | None = None,
    cap_fraction: float = _CAP_FRACTION,
    low_fraction: float = 1e-3,
    rel_tol: float = 0.02,
) -> np.ndarray:
    """The one max-QPS routine: for each design ``rows[i]`` with stability limit
    ``limit_qps[i]``, the highest load ``meets`` accepts, all designs in parallel.

    ``meets(rows, qps) -> bool array`` says whether each design meets its SLA at its load (one
    batch simulation, on common random numbers). Cap: a design meeting it at ``cap_fraction``
    x its limit returns that; floor: one missing it at ``low_fraction`` x its limit returns 0;
    otherwise log-space bisection until ``hi / lo <= 1 + rel_tol``, returning ``lo``.
    :func:`max_qps_batch` (pipelines of FIFO pools) and DeepRecSched's fork-join serving model
    both use it."""
    limit = np.asarray(limit_qps, dtype=np.float64).reshape(-1)
    index = np.arange(limit.size) if rows is None else np.asarray(rows).reshape(-1)
    out = np.zeros(limit.size, dtype=np.float64)
    position = np.arange(limit.size)
    cap = cap_fraction * limit
    ok = np.asarray(meets(index, cap), dtype=bool)
    out[ok] = cap[ok]
    position, index = position[~ok], index[~ok]
    hi = cap_fraction * limit[~ok]
    lo = low_fraction * limit[~ok]
    ok = np.asarray(meets(index, lo), dtype=bool)
    position, index, lo, hi = position[ok], index[ok], lo[ok], hi[ok]
    while position.size:
        done = hi / lo <= 1.0 + rel_tol
        out[position[done]] = lo[done]
        position, index, lo, hi = position[~done], index[~done], lo[~done], hi[~done]
        if not position.size:
            break
        mid = np.sqrt(lo * hi)
        ok = np.asarray(meets(index, mid), dtype=bool)
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid)
    return out


# --------------------------------------------------------------------------- query count


def quantile_rank_band(
    n_queries: int, percentile: float, *, confidence: float = 0.95
) -> tuple[int, int]:
    """Distribution-free confidence band for a quantile, as 1-based order-statistic ranks.

    With ``n`` independent latencies, the number ``B`` below the true ``p``-quantile is
    Binomial(n, p), so ``P(X_(l) <= xi_p < X_(u)) = P(l <= B < u)``. Returns the equal-tailed
    ``(l, u)``: ``l`` the largest rank with ``P(B < l) <= alpha / 2``, ``u`` the smallest with
    ``P(B >= u) <= alpha / 2`` (``alpha = 1 - confidence``); exact binomial sums, no normal
    approximation. For ``n = 1744`` measured queries (2000 simulated, 256 warm-up) and p95:
    ``(1639, 1675)``, i.e. the true p95 lies between the sample's p93.9 and p96.0 with at
    least 95 % confidence.
    """
    n = _check_positive_int(n_queries, "n_queries")
    p = _as_real(percentile)
    if p is None or not 0.0 < p < 100.0:
        raise ValueError(f"percentile must be in (0, 100), got {percentile!r}")
    conf = _as_real(confidence)
    if conf is None or not 0.0 < conf < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    q = p / 100.0
    k = np.arange(n + 1, dtype=np.float64)
    log_pmf = (
        np.array([math.lgamma(n + 1.0)])
        - np.array([math.lgamma(x + 1.0) for x in k])
        - np.array([math.lgamma(n - x + 1.0) for x in k])
        + k * math.log(q)
        + (n - k) * math.log1p(-q)
    )
    pmf = np.exp(log_pmf - log_pmf.max())
    pmf /= pmf.sum()
    below = np.concatenate([[0.0], np.cumsum(pmf)])  # below[l] = P(B < l)
    half = (1.0 - conf) / 2.0
    lower = int(np.flatnonzero(below <= half).max())
    upper_tail = 1.0 - below  # upper_tail[u] = P(B >= u)
    upper = int(np.flatnonzero(upper_tail <= half).min())
    return max(lower, 1), min(upper, n)


def tail_tolerance(percentile: float, measured: int, *, confidence: float = 0.95) -> float:
    """Relative half-width of the ``percentile`` latency estimated from ``measured`` queries
    at ``confidence``, under :func:`queries_for_tolerance`'s exponential-tail rule (its
    inverse)."""
    q = percentile / 100.0
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2.0)
    return z * math.sqrt(q / ((1.0 - q) * max(1, measured))) / math.log(1.0 / (1.0 - q))


def queries_for_tolerance(
    percentile: float, rel_tol: float, *, confidence: float = 0.95, warmup: int = 0
) -> int:
    """Simulated queries so the ``percentile`` latency is within ``rel_tol`` at ``confidence``.

    The sample ``p``-quantile of ``n`` independent draws has standard error
    ``sqrt(p (1 - p) / n) / f(xi_p)`` (``f`` the density at the quantile). For an exponential
    tail (the M/M/1 sojourn; a constant service added in front only shrinks the relative
    error) ``f(xi_p) xi_p = (1 - p) ln(1 / (1 - p))``, so the half-width relative to ``xi_p``
    is ``z sqrt(p / ((1 - p) n)) / ln(1 / (1 - p))`` and

        ``n = ceil((z / rel_tol)**2 p / ((1 - p) ln(1 / (1 - p))**2)) + warmup``.

    p95, 95 % (z = 1.96): 5 % needs 3254 measured queries, 10 % needs 814; the default 2000
    queries with 256 warm-up (1744 measured) give about +-6.8 %. Two caveats: at high
    utilisation neighbouring latencies are correlated, which widens the interval (the rule
    assumes independence); and under common random numbers every design sees the same
    stream, so comparisons between designs are far tighter than this absolute error.
    See :func:`quantile_rank_band` for the distribution-free statement.
    """
    p = _as_real(percentile)
    if p is None or not 0.0 < p < 100.0:
        raise ValueError(f"percentile must be in (0, 100), got {percentile!r}")
    tol = _check_positive_real(rel_tol, "rel_tol")
    conf = _as_real(confidence)
    if conf is None or not 0.0 < conf < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    count = as_int(warmup)
    if count is None or count < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
    q = p / 100.0
    z = statistics.NormalDist().inv_cdf(0.5 + conf / 2.0)
    n = (z / tol) ** 2 * q / ((1.0 - q) * math.log(1.0 / (1.0 - q)) ** 2)
    return math.ceil(n) + count
