"""meta_schedule tuning of kernels, with a persistent tuning database.

``codesign measure MODEL --tune TRIALS`` tunes each dense kernel of the model with
``tvm.s_tir.meta_schedule.tune_tir`` starting from the unscheduled TE kernel, keeps the tuning
records in a JSON database (``<cache>/tuning/`` unless ``--tuning-db DIR``), builds the best
record and measures it like any kernel (numpy check, then timing). The measurement is stored
as schedule variant ``ms`` (target key ``llvm:cpu:threads=N:schedule=ms:trials=T``), beside
the hand schedule's.

A kernel already tuned with at least as many trials in that directory (``tuned.json`` counts
them, the JSON database holds the records) is not tuned again: its best record is rebuilt.

tvm is imported lazily (through :func:`tvm_measured._tvm`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codesign.cost_models import tvm_measured as tm
from codesign.cost_models.measure_db import MeasureDB, Row, row_from_measurement

SCHEDULE = "ms"
#: Kernel kinds tuned (the rest keep their hand schedule only).
TUNABLE = ("dense",)
#: How many trials the tuning directory has run per kernel (the records are meta_schedule's).
TRIALS_FILE = "tuned.json"


def schedule_name(trials: int) -> str:
    """The schedule variant in the database key: more trials may find a faster kernel."""
    return f"{SCHEDULE}:trials={trials}"


def default_dir() -> Path:
    base = os.environ.get("CODESIGN_CACHE_DIR")
    return (Path(base) if base else Path.cwd() / ".codesign-cache") / "tuning"


def ms_target(threads: int) -> Any:
    """The host target with ``num-cores`` set (meta_schedule sizes its parallel loops by it)."""
    tvm = tm._tvm()
    return tvm.target.Target({"kind": "llvm", "mcpu": tm.host_mcpu(), "num-cores": threads})


@dataclass
class TuneResult:
    """The tuned schedule's module and how it was obtained."""

    mod: Any
    reused: bool
    trials: int
    records: int
    tune_s: float


def _trials_done(work_dir: Path) -> dict[str, int]:
    path = work_dir / TRIALS_FILE
    try:
        return {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _record_trials(work_dir: Path, key: str, trials: int) -> None:
    done = _trials_done(work_dir)
    done[key] = max(trials, done.get(key, 0))
    tmp = work_dir / f".{TRIALS_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(done, indent=1, sort_keys=True))
    tmp.replace(work_dir / TRIALS_FILE)


def tuning_records(work_dir: str | Path) -> int:
    """Number of tuning records in the JSON database under ``work_dir`` (no tvm import)."""
    path = Path(work_dir) / "database_tuning_record.json"
    try:
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    except OSError:
        return 0


@functools.cache
def _in_process_builder() -> type:
    """A meta_schedule builder compiling candidates in this process: the stock LocalBuilder
    starts a fresh worker per batch of candidates, and each worker imports
    ``tvm.s_tir.tensor_intrin`` (over a minute here) before it builds anything. The fp32
    kernels tuned here use no tensor intrinsics."""
    tm._tvm()
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock
    from tvm.support.tar import tar

    @derived_object
    class InProcessBuilder(ms.builder.PyBuilder):
        def build(self, build_inputs: list[Any]) -> list[Any]:
            results = []
            for item in build_inputs:
                try:
                    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(item.mod)
                    lib = tm._tvm().compile(mod, target=item.target)
                    path = os.path.join(tempfile.mkdtemp(), "tvm_tmp_mod." + tar.output_format)
                    lib.export_library(path, fcompile=tar)
                    results.append(ms.builder.BuilderResult(path, None))
                except Exception as exc:  # a candidate that does not build is a failed trial
                    results.append(ms.builder.BuilderResult(None, tm._one_line(exc)))
            return results

    return InProcessBuilder


def _tune_tir(
    ms: Any,
    mod: Any,
    target: Any,
    work_dir: Path,
    database: Any,
    *,
    trials: int,
    threads: int,
    seed: int,
) -> None:
    try:
        import xgboost  # noqa: F401

        cost_model = "xgb"
    except ImportError:  # meta_schedule's learned cost model needs xgboost; sample at random
        cost_model = "random"
    # meta_schedule logs every round to stdout (results go there): keep its warnings, sent to
    # stderr; the full logs stay in work_dir/logs
    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    level = logger.level
    logger.setLevel(logging.WARNING)
    with contextlib.redirect_stdout(sys.stderr):
        try:
            _run_tune_tir(ms, mod, target, work_dir, database, trials, threads, seed, cost_model)
        finally:
            logger.setLevel(level)


def _run_tune_tir(ms, mod, target, work_dir, database, trials, threads, seed, cost_model) -> None:
    ms.tune_tir(
        mod,
        target,
        work_dir=str(work_dir),
        max_trials_global=trials,
        num_trials_per_iter=min(64, trials),
        builder=_in_process_builder()(),
        database=database,
        cost_model=cost_model,
        num_tuning_cores=threads,
        seed=seed,
        # the generic LLVM rules: "from-target" adds VNNI/AVX-512 tensorization rules on CPUs
        # that have them (int8 intrinsics, which the stub below leaves unregistered and the
        # fp32 kernels tuned here cannot use)
        space=ms.space_generator.PostOrderApply(
            sch_rules="llvm", postprocs="llvm", mutator_probs="llvm"
        ),
    )


@contextlib.contextmanager
def _without_tensor_intrinsics() -> Iterator[None]:
    """Skip meta_schedule's import of ``tvm.s_tir.tensor_intrin`` while tuning (about a minute
    of TVMScript parsing, mostly CUDA MMA intrinsics, before the first trial): an empty module
    stands in for it, and is removed afterwards so a later real import still works. The fp32
    CPU kernels tuned here use no tensor intrinsics."""
    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        yield
        return
    stub = types.ModuleType(name)
    sys.modules[name] = stub
    try:
        yield
    finally:
        if sys.modules.get(name) is stub:
            del sys.modules[name]


def tune(
    spec: tm.KernelSpec, *, trials: int, work_dir: str | Path, threads: int = 1, seed: int = 0
) -> TuneResult:
    """The best schedule of ``spec`` in the tuning database at ``work_dir``, tuning it first
    (``trials`` measured candidates) unless the database already holds that many."""
    if spec.kind not in TUNABLE:
        raise tm.UnsupportedKernel(f"{spec.label()}: only {', '.join(TUNABLE)} kernels are tuned")
    if trials < 1:
        raise tm.MeasureError("tuning needs at least one trial")
    tm._tvm()
    from tvm.s_tir import meta_schedule as ms

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    mod = tm.lower_unscheduled(spec)
    target = ms_target(threads)
    database = ms.database.JSONDatabase(work_dir=str(work_dir), module_equality="structural")
    key = f"{spec.signature()}|{target}"
    reused = database.has_workload(mod) and _trials_done(work_dir).get(key, 0) >= trials
    start = time.perf_counter()
    if not reused:
        with _without_tensor_intrinsics():
            _tune_tir(
                ms, mod, target, work_dir, database, trials=trials, threads=threads, seed=seed
            )
        _record_trials(work_dir, key, trials)
    tune_s = time.perf_counter() - start
    sch = ms.tir_integration.compile_tir(database, mod, target)
    if sch is None:
        raise tm.MeasureError(f"{spec.label()}: tuning found no valid schedule in {trials} trials")
    records = len(database.get_top_k(database.commit_workload(mod), 1 << 20))
    return TuneResult(sch.mod, reused, trials, records, tune_s)


def measure_tuned(
    spec: tm.KernelSpec,
    timing: tm.TimingConfig | None = None,
    *,
    trials: int,
    work_dir: str | Path,
) -> tm.Measurement:
    """Tune (or reuse the tuning of) ``spec``, then check and time the tuned kernel (in this
    process). Failures come back as a Measurement with a status and a reason."""
    timing = timing or tm.TimingConfig()
    info: dict[str, Any] = {}

    def build(spec: tm.KernelSpec) -> Any:
        try:
            result = tune(spec, trials=trials, work_dir=work_dir, threads=timing.threads)
        except tm.MeasureError:
            raise
        except Exception as exc:  # TVM's own error types
            raise tm.MeasureError(f"{spec.label()}: tuning failed: {tm._one_line(exc)}") from exc
        info.update(
            tuning="reused" if result.reused else "tuned",
            trials=result.trials,
            records=result.records,
            tune_s=result.tune_s,
        )
        try:
            return tm._tvm().compile(result.mod, target=tm.make_target())
        except Exception as exc:
            raise tm.MeasureError(f"{spec.label()}: build failed: {tm._one_line(exc)}") from exc

    m = tm.measure(spec, timing, build_fn=build, schedule=schedule_name(trials))
    m.extra.update(info)
    return m


def measure_tuned_specs(
    specs: Sequence[tm.KernelSpec],
    db: MeasureDB,
    *,
    trials: int,
    work_dir: str | Path | None = None,
    timing: tm.TimingConfig | None = None,
    retry_failed: bool = False,
    on_progress: Callable[[tm.KernelSpec, str], None] | None = None,
) -> list[tuple[Row, dict[str, Any]]]:
    """Tuned measurements of the tunable ``specs`` through the measurement database (variant
    ``ms``): ``(row, info)`` each, info saying whether tuning ran or was reused (empty when
    the row came from the database)."""
    timing = timing or tm.TimingConfig()
    work_dir = Path(work_dir) if work_dir is not None else default_dir()
    key = {
        "target": tm.target_key("cpu", threads=timing.threads, schedule=schedule_name(trials)),
        "tvm_version": tm.tvm_version(),
        "cpu_model": tm.cpu_model(),
        "schedule_version": tm.SCHEDULE_VERSION,
    }
    out: list[tuple[Row, dict[str, Any]]] = []
    for spec in specs:
        if spec.kind not in TUNABLE:
            continue
        row = db.get(spec.signature(), **key)
        if row is not None and (row.ok or not retry_failed):
            out.append((row, {}))
            if on_progress:
                on_progress(spec, "cached")
            continue
        m = measure_tuned(spec, timing, trials=trials, work_dir=work_dir)
        row = row_from_measurement(
            m,
            tvm_version=key["tvm_version"],
            cpu_model=key["cpu_model"],
            schedule=key["schedule_version"],
        )
        db.put(row)
        out.append(
            (
                row,
                {k: m.extra[k] for k in ("tuning", "trials", "records", "tune_s") if k in m.extra},
            )
        )
        if on_progress:
            on_progress(spec, m.status)
    return out
