"""The joint co-design space, built from the targets (define-by-run, dotted knob names), and
the objective.

A trial proposes:
- per chip: ``hw.<target>.<knob>`` for each knob a target marks ``search="chip"`` (e.g.
  RPAccel's ``pe_budget``, ``embedding_sram_budget_bytes``). Chip budgets are searched only
  when area or power is an objective or constrained (a larger chip would always win otherwise);
  ``[space.hw."<target>"]`` lists values to search or pins a value;
- the number of stages;
- per stage i: ``stage{i}.model``, ``stage{i}.target``, ``stage{i}.engines``,
  ``stage{i}.shrink_log2`` (i >= 2: stage i ranks ``items_{i-1} >> shrink`` items, never fewer
  than the final keep), ``stage{i}.batch_split_log2`` (the stage's items in 2**s inference
  batches), ``stage{i}.share`` (its weight in the split of a chip or socket that an earlier
  stage also uses; the first stage on a chip weighs 1) and
  ``stage{i}.<target>.<knob>`` for each knob its target marks ``search="stage"`` (RPAccel:
  partition rows and cols, static and dynamic cache bytes, top-k units, sub-batch; CPU: cores
  per engine).

Feasible by construction (:func:`repair`): stages that filter nothing are dropped; each chip's
or socket's capacity is split among the stages placed on it by their shares, and a stage whose
engines would take more than its share is shrunk, one grid step of its largest knob at a time,
then to fewer engines. Several proposals can repair to one design, which is evaluated once.

The evaluation (:func:`evaluate_design`) is :func:`codesign.evaluate.evaluate` with the run's
load: a pure function of the design and the run config (the load's own seed, not the search's).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from codesign.config import RunConfig
from codesign.errors import CodesignError


class InfeasibleDesign(CodesignError):
    """A proposed design that cannot be priced; the trial fails with this reason, which starts
    with ``unbuildable:`` (over a chip's capacity), ``quality:`` (the quality table cannot
    answer its funnel) or ``error:`` (its pricing raised an unexpected error)."""


#: Weights a stage may take of a shared chip or socket (normalised over its stages).
SHARES = (1, 2, 3, 4)


@dataclass(frozen=True)
class TargetSpace:
    """What the search tries on one target: grids of chip and stage knobs, and pinned values
    (stage-scope pins go to every stage on the target, the others to its chip)."""

    chip: tuple[tuple[str, tuple[Any, ...]], ...]
    stage: tuple[tuple[str, tuple[Any, ...]], ...]
    chip_pins: tuple[tuple[str, Any], ...]
    stage_pins: tuple[tuple[str, Any], ...]
    shared: bool  # the target has a capacity: its stages share one chip or socket


def _budgets_matter(cfg: RunConfig) -> bool:
    return (
        any(o in cfg.objectives for o in ("area_mm2", "power_w", "energy_j"))
        or cfg.area_budget_mm2 is not None
    )


@lru_cache(maxsize=64)
def target_space(cfg: RunConfig, target: str) -> TargetSpace:
    """The grids of ``target``'s searched knobs, narrowed by ``[space.hw."<target>"]``."""
    from codesign.plugins import load_target
    from codesign.targets.base import search_grid, target_capacity

    tgt = load_target(target)
    space = tgt.design_space()
    table = cfg.hw_table(target)
    legacy = {"rows": cfg.accel_rows, "cols": cfg.accel_cols}
    chip, stage, chip_pins, stage_pins = [], [], [], []
    for knob in space.knobs:
        role = knob.search
        value = table.get(knob.name)
        if value is None and legacy.get(knob.name) and role == "stage":
            value = tuple(legacy[knob.name])
        if value is not None and not isinstance(value, tuple):
            (stage_pins if role == "stage" else chip_pins).append((knob.name, value))
            continue
        if value is None and (not role or (role == "chip" and not _budgets_matter(cfg))):
            continue
        grid = (
            tuple(value)
            if value is not None
            else tuple(
                v
                for v in search_grid(knob)
                if (knob.low is None or v >= knob.low) and (knob.high is None or v <= knob.high)
            )
        )
        # a knob the target does not search but the run lists is a chip knob (clock, dataflow)
        (stage if role == "stage" else chip).append((knob.name, grid))
    shared = bool(target_capacity(tgt, space.resolve(dict(chip_pins))))
    return TargetSpace(tuple(chip), tuple(stage), tuple(chip_pins), tuple(stage_pins), shared)


def suggest_design(trial: Any, cfg: RunConfig) -> dict[str, Any]:
    """Propose a pipeline design with Optuna's define-by-run API; returns a design dict
    (a pipeline spec), repaired to fit its chips."""
    chips: dict[str, dict[str, Any]] = {}
    for target in cfg.targets:
        ts = target_space(cfg, target)
        knobs = dict(ts.chip_pins)
        for name, grid in ts.chip:
            knobs[name] = trial.suggest_categorical(f"hw.{target}.{name}", list(grid))
        if knobs:
            chips[target] = knobs
    n = trial.suggest_int("stages", 1, cfg.max_stages)
    stages = []
    items = cfg.candidates
    lo, hi = cfg.batch_split_log2
    for i in range(1, n + 1):
        if i > 1:
            shrink = trial.suggest_int(f"stage{i}.shrink_log2", *cfg.shrink_log2)
            items = max(cfg.keep, items >> shrink)
        target = trial.suggest_categorical(f"stage{i}.target", list(cfg.targets))
        ts = target_space(cfg, target)
        stage: dict[str, Any] = {
            "name": f"stage{i}",
            "model": trial.suggest_categorical(f"stage{i}.model", list(cfg.models)),
            "target": target,
            "engines": trial.suggest_categorical(f"stage{i}.engines", list(cfg.engines)),
            "items": items,
            "split": trial.suggest_int(f"stage{i}.batch_split_log2", lo, hi) if hi > lo else lo,
            # a weight in the split of a chip that an earlier stage also uses
            "share": trial.suggest_categorical(f"stage{i}.share", list(SHARES))
            if ts.shared and any(st["target"] == target for st in stages)
            else 1,
            "knobs": dict(ts.stage_pins),
        }
        for name, grid in ts.stage:
            stage["knobs"][name] = trial.suggest_categorical(
                f"stage{i}.{target}.{name}", list(grid)
            )
        stages.append(stage)
    return repair(stages, chips, cfg)


def search_space(cfg: RunConfig) -> dict[str, Any]:
    """The space :func:`suggest_design` draws from, flattened (every stage's knobs up to
    ``max_stages``, for every target, as Optuna distributions): for samplers that need a fixed
    space (skopt) and for the hardware loop of the two-level strategy. A trial only uses the
    knobs of its stages and their targets."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    space: dict[str, Any] = {}
    for target in cfg.targets:
        for name, grid in target_space(cfg, target).chip:
            space[f"hw.{target}.{name}"] = CategoricalDistribution(list(grid))
    space["stages"] = IntDistribution(1, cfg.max_stages)
    lo, hi = cfg.batch_split_log2
    for i in range(1, cfg.max_stages + 1):
        if i > 1:
            space[f"stage{i}.shrink_log2"] = IntDistribution(*cfg.shrink_log2)
        space[f"stage{i}.target"] = CategoricalDistribution(list(cfg.targets))
        space[f"stage{i}.model"] = CategoricalDistribution(list(cfg.models))
        space[f"stage{i}.engines"] = CategoricalDistribution(list(cfg.engines))
        if hi > lo:
            space[f"stage{i}.batch_split_log2"] = IntDistribution(lo, hi)
        if i > 1 and any(target_space(cfg, t).shared for t in cfg.targets):
            space[f"stage{i}.share"] = CategoricalDistribution(list(SHARES))
        for target in cfg.targets:
            for name, grid in target_space(cfg, target).stage:
                space[f"stage{i}.{target}.{name}"] = CategoricalDistribution(list(grid))
    return space


def hardware_knobs(cfg: RunConfig) -> list[str]:
    """The ``hw.*`` knobs of the space (the outer loop of the two-level strategy)."""
    return [name for name in search_space(cfg) if name.startswith("hw.")]


# --- repair: feasible by construction ------------------------------------------------------------


def repair(
    stages: list[dict[str, Any]], chips: dict[str, dict[str, Any]], cfg: RunConfig
) -> dict[str, Any]:
    """A buildable design from a proposal: drop stages that filter nothing, connect the
    funnel, set batch sizes, and fit every chip's stages into its capacity by their shares."""
    kept = []
    for i, st in enumerate(stages):
        keep = stages[i + 1]["items"] if i + 1 < len(stages) else cfg.keep
        if keep >= st["items"] and i + 1 < len(stages):
            continue  # filters nothing: the next stage ranks the same items
        kept.append({**st, "keep": min(keep, st["items"]), "knobs": dict(st["knobs"])})
    for i, st in enumerate(kept):
        st["name"] = f"stage{i + 1}"
        batch = math.ceil(st["items"] / 2 ** st.pop("split"))
        st["batch"] = batch if batch < st["items"] else 0
    for target in {st["target"] for st in kept}:
        chip_items, capacity = _chip_capacity(target, tuple(sorted(chips.get(target, {}).items())))
        if not capacity:
            continue
        on_chip = [st for st in kept if st["target"] == target]
        total = sum(st["share"] for st in on_chip)
        grids = target_space(cfg, target).stage
        for st in on_chip:
            allowance = tuple((k, v * st["share"] / total) for k, v in capacity.items())
            knobs, st["engines"] = _fitted(
                target,
                chip_items,
                allowance,
                tuple(sorted(st["knobs"].items())),
                st["engines"],
                grids,
            )
            st["knobs"] = dict(knobs)
    for st in kept:
        st.pop("share", None)
    design: dict[str, Any] = {
        "version": 1,
        "kind": "pipeline",
        "name": "design",
        "cost_model": cfg.cost_model,
        "stages": kept,
        "load": {
            "queries": cfg.queries,
            "warmup": cfg.warmup,
            "seed": cfg.load_seed,
            "arrival": cfg.arrival,
        },
    }
    if chips:
        design["chips"] = {t: dict(k) for t, k in sorted(chips.items())}
    return design


@lru_cache(maxsize=1 << 12)
def _chip_capacity(target: str, pins: tuple) -> tuple[tuple, dict[str, float]]:
    """(the chip's knob point as sorted items, its capacity) for ``target`` with the chip knobs
    ``pins`` (sorted items), memoised: repair asks once per proposal."""
    from codesign.plugins import load_target
    from codesign.targets.base import target_capacity

    tgt = load_target(target)
    chip = tgt.design_space().resolve(dict(pins))
    return tuple(sorted(chip.items())), dict(target_capacity(tgt, chip))


@lru_cache(maxsize=1 << 16)
def _engine_resources(target: str, chip: tuple, knobs: tuple) -> dict[str, float]:
    """The resources one engine of ``target`` takes with these chip and stage knobs (sorted
    item tuples), memoised: repair asks for the same few points many times, and resolving a
    target's knob point costs tens of microseconds."""
    from codesign.evaluate import engine_point
    from codesign.plugins import load_target
    from codesign.targets.base import target_resources

    tgt = load_target(target)
    return dict(target_resources(tgt, engine_point(tgt, dict(chip), dict(knobs))))


@lru_cache(maxsize=1 << 16)
def _fitted(
    target: str, chip: tuple, allowance: tuple, knobs: tuple, engines: int, grids: tuple
) -> tuple[tuple, int]:
    """:func:`_fit` of one stage (arguments as sorted item tuples), memoised: an enumeration
    fits the same stage into the same share for many combinations of the other stages."""
    st = {"knobs": dict(knobs), "engines": engines}
    _fit(
        st,
        dict(allowance),
        dict(grids),
        lambda k: _engine_resources(target, chip, tuple(sorted(k.items()))),
    )
    return tuple(st["knobs"].items()), st["engines"]


def _fit(st: dict[str, Any], allowance: dict[str, float], grids: dict, resources) -> None:
    """Shrink a stage until its engines fit ``allowance``: one grid step down of the searched
    knob that frees the most of an over-used resource, then fewer engines."""

    def over(knobs: dict[str, Any], engines: int) -> float:
        used = resources(knobs)
        return sum(
            max(0.0, engines * used.get(k, 0.0) / v - 1.0) if v > 0 else engines * used.get(k, 0.0)
            for k, v in allowance.items()
        )

    for _ in range(64):
        excess = over(st["knobs"], st["engines"])
        if excess <= 1e-9:
            return
        best, best_excess = None, excess
        for name, grid in grids.items():
            values = sorted(grid)
            current = st["knobs"].get(name)
            if current not in values or values.index(current) == 0:
                continue
            trial = {**st["knobs"], name: values[values.index(current) - 1]}
            trial_excess = over(trial, st["engines"])
            if trial_excess < best_excess - 1e-12:
                best, best_excess = trial, trial_excess
        if best is not None:
            st["knobs"] = best
            continue
        if st["engines"] > 1:
            st["engines"] -= 1
            continue
        return  # cannot shrink further: the evaluator reports it unbuildable


def design_from(
    stages: list[dict[str, Any]], chips: dict[str, dict[str, Any]], cfg: RunConfig
) -> dict[str, Any]:
    """A design from explicit stages (``name``, ``model``, ``target``, ``engines``, ``items``;
    optional ``knobs``, ``split`` = batch_split_log2, ``share``) and chip tables, completed and
    repaired as the space completes proposals (for tests, benchmarks and hand-made designs)."""
    full = []
    for st in stages:
        ts = target_space(cfg, st["target"])
        full.append(
            {
                "split": cfg.batch_split_log2[0],
                "share": 1,
                **st,
                "knobs": {**dict(ts.stage_pins), **st.get("knobs", {})},
            }
        )
    return repair(full, {t: dict(k) for t, k in chips.items()}, cfg)


def enumerate_designs(cfg: RunConfig):
    """Every distinct (repaired) design of the space, by walking the define-by-run tree (for
    exhaustive ground truth on small instances)."""
    for _, design in enumerate_proposals(cfg):
        yield design


class TooManyDesigns(CodesignError):
    """The space (with its pinned parameters) holds more designs than the caller's limit."""


def enumerate_proposals(
    cfg: RunConfig, *, fixed: dict[str, Any] | None = None, limit: int | None = None
):
    """(parameters, design) for every distinct repaired design, walking the define-by-run
    tree with the parameters in ``fixed`` pinned (e.g. one hardware point); the parameters
    propose that design again (``study.enqueue_trial``). Raises :class:`TooManyDesigns` once
    more than ``limit`` proposals have been walked."""
    seen: set[str] = set()
    stack: list[list[int]] = [[]]
    walked = 0
    while stack:
        prefix = stack.pop()
        walker = _Walker(prefix, fixed or {})
        design = suggest_design(walker, cfg)
        walked += 1
        if limit is not None and walked > limit:
            raise TooManyDesigns(f"the space holds more than {limit} proposals")
        for position, size in walker.branches:
            for choice in range(1, size):
                stack.append(walker.taken[:position] + [choice])
        key = design_key(design)
        if key not in seen:
            seen.add(key)
            yield dict(walker.params), design


class _Walker:
    """A stand-in trial: replays ``prefix`` choice indices, then takes the first option of each
    new decision and records where the tree branches; ``fixed`` parameters are not branched
    on. ``params`` holds the values taken, by name."""

    def __init__(self, prefix: list[int], fixed: dict[str, Any]) -> None:
        self.prefix = prefix
        self.fixed = fixed
        self.taken: list[int] = list(prefix)
        self.branches: list[tuple[int, int]] = []
        self.position = 0
        self.params: dict[str, Any] = {}

    def _pick(self, name: str, options: list[Any]) -> Any:
        if name in self.fixed:
            self.params[name] = self.fixed[name]
            return self.fixed[name]
        if self.position < len(self.prefix):
            choice = self.prefix[self.position]
        else:
            choice = 0
            self.taken.append(0)
            if len(options) > 1:
                self.branches.append((self.position, len(options)))
        self.position += 1
        self.params[name] = options[choice]
        return options[choice]

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        return self._pick(name, list(choices))

    def suggest_int(self, name: str, low: int, high: int) -> int:
        return self._pick(name, list(range(low, high + 1)))


def design_key(design: dict[str, Any]) -> str:
    """Canonical key: identical designs (re-proposed by a sampler, or proposals that repair to
    one design) share one evaluation. The chips' knobs are part of a design (they set the
    partitions' shares and the silicon), for the targets its stages use."""
    used = {st["target"] for st in design["stages"]}
    chips = {t: k for t, k in design.get("chips", {}).items() if t in used}
    return json.dumps({"stages": design["stages"], "chips": chips}, sort_keys=True)


# --- quality -----------------------------------------------------------------------------------


def table_quality(
    stages: list[tuple[str, int, int]], metric: str, table: str | None = None
) -> float:
    """The value of :func:`codesign.quality.tables.funnel_table_quality`."""
    from codesign.quality.tables import funnel_table_quality

    return funnel_table_quality(stages, metric, table).value


# --- evaluation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    design: dict[str, Any]


def context(cfg: RunConfig) -> Any:
    """The evaluator's context for the run: its load (with the load's own seed), SLA and the
    quality source."""
    from codesign.evaluate import Context, QualitySpec

    wanted = "quality" in cfg.objectives or cfg.quality_floor is not None
    quality = QualitySpec(
        metric=cfg.quality_metric,
        source=cfg.quality_source if wanted else "none",
        table=cfg.quality_table,
        dataset=cfg.quality_dataset,
        seed=cfg.quality_seed,
        samples=cfg.quality_samples,
        val_samples=cfg.quality_val_samples,
        max_rows=cfg.quality_max_rows,
    )
    return Context(
        qps=cfg.qps,
        queries=cfg.queries,
        warmup=cfg.warmup,
        seed=cfg.load_seed,
        arrival=cfg.arrival,
        sla_s=cfg.sla_ms / 1e3 if cfg.sla_ms is not None else None,
        max_qps="max_qps" in cfg.objectives and cfg.sla_ms is not None,
        quality=quality,
    )


def to_pipeline(design: dict[str, Any]) -> Any:
    """The :class:`codesign.design.Pipeline` of a design dict the space built (valid by
    construction: no spec validation on this path)."""
    from codesign.design import LoadSettings, Pipeline, Stage

    stages = tuple(
        Stage(
            model=st["model"],
            items=st["items"],
            keep=st["keep"],
            target=st["target"],
            knobs=dict(st["knobs"]),
            engines=st["engines"],
            batch=st.get("batch", 0),
            name=st["name"],
            cost_model=design.get("cost_model", "analytical"),
        )
        for st in design["stages"]
    )
    load = design.get("load", {})
    return Pipeline(
        design.get("name", "design"),
        stages,
        LoadSettings(
            queries=load.get("queries", 2000),
            warmup=load.get("warmup", 256),
            seed=load.get("seed", 0),
            arrival=load.get("arrival", "exponential"),
        ),
        chips=tuple((t, dict(k)) for t, k in sorted(design.get("chips", {}).items())),
    )


def evaluate_design(design: dict[str, Any], cfg: RunConfig) -> Evaluation:
    """Cost, load and quality of one design (:func:`codesign.evaluate.evaluate`). Raises
    InfeasibleDesign with the reason when it cannot be built, its quality is unknown, or its
    pricing raised an unexpected error (a plugin target, TVM, a numerical fault:
    :func:`error_reason`), so that one broken design fails its trial, not the study. Errors
    about the whole run (:class:`CodesignError`, MemoryError, KeyboardInterrupt) propagate."""
    from codesign.evaluate import Infeasible, evaluate

    ctx = context(cfg)
    try:
        metrics = evaluate(to_pipeline(design), ctx)
    except Infeasible as exc:
        raise InfeasibleDesign(f"{exc.kind}: {exc}") from None
    except _RUN_ERRORS:
        raise
    except Exception as exc:
        raise InfeasibleDesign(error_reason(exc)) from exc
    return Evaluation(metrics.as_dict(), design)


def evaluate_designs(
    designs: list[dict[str, Any]], cfg: RunConfig
) -> list[Evaluation | InfeasibleDesign]:
    """:func:`evaluate_design` for many designs, priced together
    (:func:`codesign.evaluate.evaluate_batch`): infeasible ones come back as the error. When
    the batch raises an unexpected error, the designs are priced one by one, so that only those
    that raise come back failed (``error: ...``)."""
    from codesign.evaluate import Infeasible, evaluate_batch

    ctx = context(cfg)
    try:
        results = evaluate_batch([to_pipeline(d) for d in designs], ctx)
    except _RUN_ERRORS:
        raise
    except Exception:  # one design broke the batch: price them one by one to find which
        return [_evaluate_or_error(d, cfg) for d in designs]
    return [
        InfeasibleDesign(f"{r.kind}: {r}")
        if isinstance(r, Infeasible)
        else Evaluation(r.as_dict(), d)
        for r, d in zip(results, designs, strict=True)
    ]


#: Errors that concern the whole run, never one design: they stop the study.
_RUN_ERRORS = (CodesignError, MemoryError)


def error_reason(exc: BaseException) -> str:
    """The one-line reason a design failed with an unexpected error (a plugin target, TVM or
    a numerical fault): ``error: <ExceptionType>: <message>``."""
    message = " ".join(str(exc).split())
    if len(message) > 300:
        message = message[:297] + "..."
    return f"error: {type(exc).__name__}: {message}" if message else f"error: {type(exc).__name__}"


def _evaluate_or_error(design: dict[str, Any], cfg: RunConfig) -> Evaluation | InfeasibleDesign:
    try:
        return evaluate_design(design, cfg)
    except InfeasibleDesign as exc:
        return exc
