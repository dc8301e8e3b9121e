"""Run configs (TOML, ``version = 1``, ``kind = "run"``): what `codesign optimize` searches.

Every field is validated before anything starts; every problem is reported at once, each with
its dotted path and a fix (:class:`codesign.errors.SpecError`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from codesign.cost_models.select import COST_MODELS
from codesign.errors import SpecError
from codesign.ir.frontends.checker import Checker, show
from codesign.ir.frontends.spec import read_input_text

OBJECTIVES = {
    # name: (direction, log-scale, unit, label)
    "quality": ("maximize", False, "", "quality"),
    "p95_latency_s": ("minimize", True, "s", "p95 latency"),
    "p99_latency_s": ("minimize", True, "s", "p99 latency"),
    "area_mm2": ("minimize", True, "mm2", "accelerator area"),
    "energy_j": ("minimize", True, "J", "energy per query"),
    "max_qps": ("maximize", True, "QPS", "max QPS under the SLA"),
    "power_w": ("minimize", True, "W", "provisioned peak power"),
}
QUALITY_KEYS = (
    "metric",
    "source",
    "dataset",
    "seed",
    "samples",
    "val_samples",
    "max_rows",
    "table",
)

#: Bounds of the search budget and seed (config fields and their CLI overrides alike).
MAX_TRIALS = 10**6
MAX_SEED = 2**31 - 1
SAMPLERS = ("auto", "tpe", "gp", "nsga2", "random", "skopt")
STRATEGIES = ("auto", "joint", "two-level")
SECTIONS = (
    "version",
    "kind",
    "name",
    "description",
    "workload",
    "quality",
    "space",
    "objectives",
    "constraints",
    "search",
)


@dataclass(frozen=True)
class RunConfig:
    name: str
    description: str
    models: tuple[str, ...]
    candidates: int
    keep: int
    qps: float
    queries: int
    warmup: int
    quality_metric: str
    quality_source: str
    quality_dataset: str
    quality_seed: int
    quality_samples: int | None
    quality_val_samples: int | None
    quality_max_rows: int | None
    quality_table: str | None
    max_stages: int
    targets: tuple[str, ...]
    engines: tuple[int, ...]
    shrink_log2: tuple[int, int]
    accel_rows: tuple[int, ...]
    accel_cols: tuple[int, ...]
    objectives: tuple[str, ...]
    sla_ms: float | None
    quality_floor: float | None
    area_budget_mm2: float | None
    trials: int
    sampler: str
    seed: int
    strategy: str = "auto"
    inner_trials: int = 10
    cost_model: str = "analytical"
    #: ``[space.hw."<target>"]``: per target, knob -> tuple of values (searched) or a value
    #: (pinned), as sorted pairs.
    hw: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    #: Each stage runs its items in 2**s inference batches, s in this range.
    batch_split_log2: tuple[int, int] = (0, 3)
    #: The load's seed (arrivals and query sizes): fixed, so a design's objectives do not
    #: depend on the search seed, the trial or the worker.
    load_seed: int = 0
    #: Arrival process of the load: "exponential" (Poisson) or "recpipe" (RecPipe's and
    #: DeepRecSys's integer-millisecond gaps).
    arrival: str = "exponential"
    #: Stop after this many seconds (with the front found so far), whatever trials are left.
    time_budget_s: float | None = None
    source_path: str = field(default="", compare=False)

    def hw_table(self, target: str) -> dict[str, Any]:
        return dict(dict(self.hw).get(target, ()))

    def config_hash(self) -> str:
        """Identity of the *problem*: the budget, sampler and seed may change on resume."""
        data = {
            k: v
            for k, v in asdict(self).items()
            if k
            not in (
                "source_path",
                "trials",
                "sampler",
                "seed",
                "strategy",
                "inner_trials",
                "time_budget_s",
            )
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def directions(self) -> list[str]:
        return [OBJECTIVES[o][0] for o in self.objectives]


def default_run_path() -> Path:
    return Path(str(resources.files("codesign") / "examples" / "recpipe-criteo.toml"))


def load_run_config(path: str | Path | None = None, **overrides: Any) -> RunConfig:
    path = Path(path) if path is not None else default_run_path()
    src = str(path)
    text = read_input_text(path, what="run config", fix="pass a .toml run config (see examples/)")
    try:
        data = tomllib.loads(text)
    except (RecursionError, tomllib.TOMLDecodeError) as exc:
        chk = Checker(source=src)
        if path.suffix.lower() in (".yaml", ".yml"):  # a pipeline spec or a target preset
            chk.add(
                "",
                "a YAML file, not a run config (.toml)",
                "codesign optimize takes a run config such as codesign/examples/*.toml; "
                "`codesign pipeline evaluate` takes a pipeline .yaml, `--target` a preset .yaml",
            )
        else:
            why = "nested too deep" if isinstance(exc, RecursionError) else str(exc)
            chk.add("", f"malformed TOML: {' '.join(why.split())}", "fix the TOML syntax")
        raise SpecError(chk.problems, source=src) from None
    except ValueError as exc:  # an integer of more than 4,300 digits
        chk = Checker(source=src)
        chk.add("", f"TOML value cannot be read ({show(str(exc))})", "use numbers of sensible size")
        raise SpecError(chk.problems, source=src) from None
    return parse_run_config(data, origin=src, **overrides)


def parse_run_config(data: Any, *, origin: str = "run", **overrides: Any) -> RunConfig:
    chk = Checker(source=origin)
    top = chk.mapping(data, "", what="a TOML document")
    if top is None:
        raise SpecError(chk.problems, source=origin)
    chk.header(top, "run", toml=True)
    chk.no_extra(top, SECTIONS, "")
    run_name = _run_name(chk, top.get("name", "run"))

    def section(name: str) -> dict:
        raw = top.get(name, {})
        sec = chk.mapping(raw, name, what=f"a [{name}] table")
        return sec or {}

    wl, ql, sp, ob, co, se = (
        section(s) for s in ("workload", "quality", "space", "objectives", "constraints", "search")
    )
    chk.no_extra(
        wl,
        ("models", "candidates", "keep", "qps", "queries", "warmup", "seed", "arrival"),
        "workload",
    )
    chk.no_extra(ql, QUALITY_KEYS, "quality")
    chk.no_extra(
        sp,
        (
            "max_stages",
            "targets",
            "engines",
            "shrink_log2",
            "batch_split_log2",
            "accel_rows",
            "accel_cols",
            "hw",
        ),
        "space",
    )
    chk.no_extra(ob, ("names",), "objectives")
    chk.no_extra(co, ("sla_ms", "quality_floor", "area_budget_mm2"), "constraints")
    chk.no_extra(
        se,
        ("trials", "sampler", "seed", "strategy", "inner_trials", "cost_model", "time_budget_s"),
        "search",
    )

    models = _str_list(chk, wl, "models", "workload")
    candidates = chk.integer(wl, "candidates", "workload", maximum=2**20)
    keep = chk.integer(wl, "keep", "workload", maximum=2**20)
    if candidates and keep and keep > candidates:
        chk.add("workload.keep", f"{keep} exceeds candidates {candidates}", "keep fewer items")
    qps = wl.get("qps")
    if not _finite(qps) or qps <= 0:
        chk.add(
            "workload.qps", f"must be a positive finite number, got {show(qps)}", "e.g. qps = 200"
        )
        qps = 1.0
    queries = chk.integer(wl, "queries", "workload", minimum=100, maximum=10**6, default=2000)
    warmup = chk.integer(wl, "warmup", "workload", minimum=0, maximum=10**6, default=256)
    if queries and warmup is not None and warmup >= queries:
        chk.add("workload.warmup", f"{warmup} is not below queries {queries}", "lower warmup")

    metric = ql.get("metric", "ndcg_recpipe@64")
    if not isinstance(metric, str) or "@" not in metric:
        chk.add(
            "quality.metric", f"must look like NAME@K, got {show(metric)}", 'e.g. "ndcg_recpipe@64"'
        )
    source = chk.choice(ql, "source", "quality", ("replay", "table"), default="replay")
    dataset = ql.get("dataset", "synthetic")
    if not isinstance(dataset, str):
        chk.add("quality.dataset", f"must be text, got {show(dataset)}", 'e.g. "synthetic"')
    table = ql.get("table")
    if table is not None and not isinstance(table, str):
        chk.add("quality.table", f"must be a CSV path, got {show(table)}", 'e.g. "quality.csv"')
        table = None
    if table and not Path(table).is_absolute() and Path(origin).is_file():
        # relative to the run config, recorded absolute: `codesign report` works from anywhere
        table = str((Path(origin).parent / table).resolve())
    if source == "table" and isinstance(metric, str) and "@" in metric and models:
        _check_table(chk, table, metric, models, candidates)
    q_seed = chk.integer(ql, "seed", "quality", minimum=0, maximum=2**31 - 1, default=0)
    from codesign.quality.datasets import MAX_SAMPLES  # held in memory: 264 bytes each

    q_samples = chk.integer(ql, "samples", "quality", maximum=MAX_SAMPLES, default=None)
    q_val = chk.integer(ql, "val_samples", "quality", maximum=MAX_SAMPLES, default=None)
    q_rows = chk.integer(ql, "max_rows", "quality", maximum=10**9, default=None)
    if source == "replay" and candidates and q_val is not None and q_val < candidates:
        chk.add(
            "quality.val_samples",
            f"{q_val} validation samples hold no query of {candidates} candidates",
            f"use at least workload.candidates ({candidates}) samples",
        )

    max_stages = chk.integer(sp, "max_stages", "space", maximum=3, default=3)
    targets = _str_list(chk, sp, "targets", "space", default=["cpu/cascadelake"])
    engines = chk.int_list(sp, "engines", "space", maximum=4096, default=[1, 2, 4, 8, 14])
    shrink = chk.int_list(sp, "shrink_log2", "space", maximum=12, default=[1, 5])
    if shrink is not None and (len(shrink) != 2 or shrink[0] > shrink[1]):
        chk.add(
            "space.shrink_log2",
            f"must be [low, high] with low <= high, got {shrink}",
            "e.g. shrink_log2 = [1, 5] (each stage keeps 1/2 to 1/32 of its input)",
        )
        shrink = [1, 5]
    splits = sp.get("batch_split_log2", [0, 3])
    if (
        not isinstance(splits, list)
        or len(splits) != 2
        or not all(type(v) is int and 0 <= v <= 12 for v in splits)
        or splits[0] > splits[1]
    ):
        chk.add(
            "space.batch_split_log2",
            f"must be [low, high] with low <= high, got {splits}",
            "e.g. batch_split_log2 = [0, 3] (1 to 8 inference batches per stage)",
        )
        splits = [0, 3]
    rows = chk.int_list(sp, "accel_rows", "space", maximum=1024, default=[])
    cols = chk.int_list(sp, "accel_cols", "space", maximum=1024, default=[])
    load_seed = chk.integer(wl, "seed", "workload", minimum=0, maximum=2**32 - 1, default=0)
    arrival = chk.choice(
        wl, "arrival", "workload", ("exponential", "recpipe"), default="exponential"
    )

    names = ob.get("names", ["quality", "p95_latency_s"])
    if not isinstance(names, list) or not 2 <= len(names) <= 4:
        chk.add(
            "objectives.names",
            f"must list 2 to 4 objectives, got {show(names)}",
            f"choose from {', '.join(OBJECTIVES)}",
        )
        names = ["quality", "p95_latency_s"]
    for i, name in enumerate(names):
        if not isinstance(name, str) or name not in OBJECTIVES:
            chk.add(
                f"objectives.names[{i}]",
                f"unknown objective {show(name)}",
                f"choose from {', '.join(OBJECTIVES)}",
            )
    if not all(isinstance(name, str) for name in names):
        names = ["quality", "p95_latency_s"]  # checked above; the rest reads names as text
    sla = _positive(chk, co, "sla_ms", "constraints")
    if "max_qps" in names and co.get("sla_ms") is None:
        chk.add(
            "objectives.names",
            "max_qps is the highest QPS whose p95 meets the SLA, but no SLA is set",
            "set [constraints] sla_ms, or drop max_qps",
        )
    floor = co.get("quality_floor")
    if floor is not None and not _finite(floor):
        chk.add(
            "constraints.quality_floor", f"must be a finite number, got {show(floor)}", "e.g. 0.9"
        )
        floor = None
    area = _positive(chk, co, "area_budget_mm2", "constraints")
    quality_wanted = "quality" in (names if isinstance(names, list) else []) or floor is not None
    if quality_wanted and source == "replay" and isinstance(dataset, str):
        # checked only when quality is asked for: a run without it trains nothing
        _check_replay(chk, dataset, metric, keep)

    trials = chk.integer(se, "trials", "search", maximum=MAX_TRIALS, default=60)
    sampler = chk.choice(se, "sampler", "search", SAMPLERS, default="auto")
    seed = chk.integer(se, "seed", "search", minimum=0, maximum=MAX_SEED, default=0)
    strategy = chk.choice(se, "strategy", "search", STRATEGIES, default="auto")
    inner = chk.integer(se, "inner_trials", "search", minimum=1, maximum=MAX_TRIALS, default=10)
    cost_model = chk.choice(se, "cost_model", "search", COST_MODELS, default="analytical")
    budget_s = _positive(chk, se, "time_budget_s", "search")
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "trials" and not _int_in(value, 1, MAX_TRIALS):
            chk.add(
                "--trials",
                f"must be an integer from 1 to {MAX_TRIALS:,}, got {show(value)}",
                "e.g. --trials 40",
            )
        if key == "sampler" and value not in SAMPLERS:
            chk.add(
                "--sampler",
                f"must be one of {', '.join(SAMPLERS)}, got {show(value)}",
                "e.g. --sampler tpe",
            )
        if key == "seed" and not _int_in(value, 0, MAX_SEED):
            chk.add(
                "--seed",
                f"must be an integer from 0 to {MAX_SEED}, got {show(value)}",
                "e.g. --seed 0",
            )
        if key == "strategy" and value not in STRATEGIES:
            chk.add(
                "--strategy",
                f"must be one of {', '.join(STRATEGIES)}, got {show(value)}",
                "e.g. --strategy two-level",
            )
        if key == "cost_model" and value not in COST_MODELS:
            chk.add(
                "--cost-model",
                f"must be one of {', '.join(COST_MODELS)}, got {show(value)}",
                "e.g. --cost-model calibrated",
            )
        if key == "time_budget_s" and (not _finite(value) or value <= 0):
            chk.add(
                "--time-budget",
                f"must be a positive number of seconds, got {show(value)}",
                "e.g. --time-budget 600",
            )
        if key == "inner_trials" and not _int_in(value, 1, MAX_TRIALS):
            chk.add(
                "--inner-trials",
                f"must be an integer from 1 to {MAX_TRIALS:,}, got {show(value)}",
                "e.g. --inner-trials 8",
            )
    chk.raise_if_any()
    models = [_config_relative(m, origin) for m in models or []]
    targets = [_config_relative(t, origin) for t in targets or []]
    _check_names(chk, models, targets)
    chk.raise_if_any()
    raw_hw = sp.get("hw", {})
    if isinstance(raw_hw, dict):  # a preset's table names it as space.targets does
        raw_hw = {_config_relative(str(k), origin): v for k, v in raw_hw.items()}
    hw = _hw_tables(chk, raw_hw, targets)
    chk.raise_if_any()
    return RunConfig(
        name=run_name,
        description=str(top.get("description", "")),
        models=tuple(models or ()),
        candidates=candidates or 1,
        keep=keep or 1,
        qps=float(qps),
        queries=queries or 1000,
        warmup=warmup or 0,
        quality_metric=metric,
        quality_source=source or "replay",
        quality_dataset=dataset,
        quality_seed=q_seed or 0,
        quality_samples=q_samples,
        quality_val_samples=q_val,
        quality_max_rows=q_rows,
        quality_table=table,
        max_stages=max_stages or 1,
        targets=tuple(targets or ()),
        engines=tuple(engines or (1,)),
        shrink_log2=(shrink[0], shrink[1]),
        accel_rows=tuple(rows or ()),
        accel_cols=tuple(cols or ()),
        objectives=tuple(names),
        sla_ms=sla,
        quality_floor=floor,
        area_budget_mm2=area,
        trials=overrides.get("trials") or trials or 60,
        sampler=overrides.get("sampler") or sampler or "auto",
        seed=overrides["seed"] if overrides.get("seed") is not None else (seed or 0),
        strategy=overrides.get("strategy") or strategy or "auto",
        inner_trials=overrides.get("inner_trials") or inner or 10,
        cost_model=overrides.get("cost_model") or cost_model or "analytical",
        hw=hw,
        batch_split_log2=(splits[0], splits[1]),
        load_seed=load_seed or 0,
        arrival=arrival or "exponential",
        time_budget_s=(
            float(overrides["time_budget_s"])
            if overrides.get("time_budget_s") is not None
            else budget_s
        ),
        source_path=_absolute(origin),
    )


def _absolute(origin: str) -> str:
    """The run config's path, absolute (recorded in the study: where its relative paths lead)."""
    try:
        return str(Path(origin).resolve()) if Path(origin).is_file() else origin
    except OSError:
        return origin


#: A run name: it names the folder runs/NAME, so it is one plain path component.
_RUN_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


def _run_name(chk: Checker, value: Any) -> str:
    """The run's ``name``, refused unless it is a plain folder name: ``runs/NAME`` must stay
    under ``runs/`` (``../x`` or an absolute path would write, and delete plans, elsewhere)."""
    if isinstance(value, str) and _RUN_NAME.fullmatch(value) and value not in (".", ".."):
        return value
    chk.add(
        "name",
        f"must be a plain name of 1 to 100 letters, digits, '-', '_' or '.' (not '.' or '..', "
        f"no '/'), got {show(value)}",
        'e.g. name = "recpipe-criteo"; choose the folder with --out',
    )
    return "run"


def _config_relative(name: str, origin: str) -> str:
    """A model spec or target preset named by a relative path is relative to the run config's
    folder (the current folder when the config has none there, as before), and recorded as an
    absolute path, so that a resumed run, `codesign report` and plans work from any folder.
    Zoo and target names are kept as they are."""
    if not name.endswith((".yaml", ".yml")) or Path(name).is_absolute():
        return name
    try:
        if Path(origin).is_file():
            beside = Path(origin).parent / name
            if beside.exists():
                return str(beside.resolve())
        return str(Path(name).resolve()) if Path(name).exists() else name
    except OSError:  # a name too long for a path: loading it reports the problem
        return name


def _hw_tables(chk: Checker, raw: Any, targets: list[str]) -> tuple:
    """``[space.hw."<target>"]``: knob = [values] (searched over these) or knob = value
    (pinned); every value checked against the knob's range."""
    from codesign.errors import CodesignError
    from codesign.plugins import load_target

    if not isinstance(raw, dict):
        chk.add(
            "space.hw", f"must be a table of targets, got {show(raw)}", '[space.hw."accel/rpaccel"]'
        )
        return ()
    out = []
    for name, table in sorted(raw.items()):
        where = f'space.hw."{name}"'
        if name not in targets:
            chk.add(where, "is not one of space.targets", f"add {name!r} to space.targets")
            continue
        if not isinstance(table, dict):
            chk.add(
                where,
                f"must be a table of knob = value(s), got {show(table)}",
                "e.g. rows = [32, 64]",
            )
            continue
        space = load_target(name).design_space()
        knobs = []
        for knob, value in sorted(table.items()):
            values = value if isinstance(value, list) else [value]
            if not values:
                chk.add(f"{where}.{knob}", "is an empty list", "list at least one value")
                continue
            try:
                parsed = [space[knob].parse(v, target=name) for v in values]
            except CodesignError as exc:
                chk.add(f"{where}.{knob}", str(exc), f"run 'codesign targets show {name}'")
                continue
            knobs.append((knob, tuple(parsed) if isinstance(value, list) else parsed[0]))
        out.append((name, tuple(knobs)))
    return tuple(out)


def _check_table(chk: Checker, table: str | None, metric: str, models: list, items: Any) -> None:
    """The table source must answer every workload model at the stage-1 pool size."""
    from codesign.errors import CodesignError
    from codesign.quality.tables import cached_table

    try:
        qt = cached_table(table)
    except CodesignError as exc:
        chk.add("quality.table", str(exc), "pass a CSV file: model,items,k,metric,value")
        return
    name, _, k_text = metric.partition("@")
    if not k_text.isdigit() or not isinstance(items, int):
        return
    for i, model in enumerate(models):
        try:
            qt.lookup(model, items, int(k_text), name)
        except CodesignError as exc:
            chk.add(
                f"workload.models[{i}]",
                f"quality source 'table': {exc}",
                'use source = "replay" (trained models), or a table with these rows',
            )


def _check_replay(chk: Checker, dataset: str, metric: Any, keep: Any) -> None:
    """The replay source's dataset reference and metric name, checked before anything runs."""
    from codesign.errors import CodesignError
    from codesign.quality.datasets import parse_dataset
    from codesign.quality.replay import parse_metric

    try:
        parse_dataset(dataset)
    except CodesignError as exc:
        chk.add("quality.dataset", str(exc), 'use "synthetic", "criteo:PATH" or "movielens:PATH"')
    if isinstance(metric, str) and "@" in metric:
        try:
            k = parse_metric(metric).k
        except CodesignError as exc:
            chk.add("quality.metric", str(exc), 'e.g. "ndcg_recpipe@64", "ndcg@10", "hr@10"')
            return
        if isinstance(keep, int) and k > keep:
            chk.add("quality.metric", f"@{k} exceeds workload.keep {keep}", f"use @{keep} or less")


def _str_list(chk: Checker, data: dict, key: str, path: str, default: Any = None):
    value = data.get(key, default)
    where = f"{path}.{key}"
    if value is None:
        chk.add(where, "is required", 'list names, e.g. ["rm-small", "rm-large"]')
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        chk.add(where, f"must be a non-empty list of names, got {show(value)}", 'e.g. ["a", "b"]')
        return None
    return value


def _positive(chk: Checker, data: dict, key: str, path: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if not _finite(value) or value <= 0:
        chk.add(
            f"{path}.{key}",
            f"must be a positive finite number, got {show(value)}",
            "or leave it out",
        )
        return None
    return float(value)


def _int_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _finite(value: Any) -> bool:
    """A real number that is not nan or +-inf (TOML allows both)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond float range
        return False


def _check_names(chk: Checker, models: list[str], targets: list[str]) -> None:
    from codesign.errors import CodesignError
    from codesign.ir.frontends.zoo import resolve
    from codesign.plugins import load_target

    for i, model in enumerate(models):
        try:
            resolve(model)
        except CodesignError as exc:
            chk.add(f"workload.models[{i}]", str(exc), "use zoo names (codesign models list)")
    for i, target in enumerate(targets):
        try:
            load_target(target)
        except CodesignError as exc:
            chk.add(f"space.targets[{i}]", str(exc), "run 'codesign targets list'")
