"""Optuna studies in real storage: create or resume, run trials, and write the run's outputs
(plans/, trials.csv, report.html).

Storage: by default an SQLite file in the run directory; ``journal:PATH`` selects a
JournalFileBackend (shared file systems, several workers); ``postgresql://...`` a PostgreSQL
server. In every kind, trials record their owner process and a heartbeat, so that trials of a
killed process are failed and their designs retried when any process next looks. Worker k
samples with ``seed + k``. The budget counts trials finished with a verdict on their design,
across all workers, exactly (see :func:`holds_slot`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codesign import __version__
from codesign.config import OBJECTIVES, RunConfig
from codesign.errors import CodesignError
from codesign.search.results import (
    constraint_names,
    metric_names,
    objective_bounds,
    record_constraints,
    trial_constraints,
)
from codesign.search.results import is_feasible as _is_feasible
from codesign.search.results import objective_values as _objective_values
from codesign.search.results import result_of as _result

STUDY_FILE = "study.sqlite3"
#: A running trial's heartbeat period, and how old its last beat may be before another host's
#: process takes it for dead (a process of the same host is checked directly).
HEARTBEAT_S = 2
GRACE_S = 5 * HEARTBEAT_S


def storage_url(run_dir: Path, storage: str | None) -> str:
    if storage:
        return storage
    return f"sqlite:///{(run_dir / STUDY_FILE).resolve()}"


#: SQLAlchemy drivers of the RDB schemes we support (scheme[+driver] -> importable module).
_PG_DRIVERS = {"": "psycopg2", "psycopg2": "psycopg2", "psycopg": "psycopg", "pg8000": "pg8000"}
_STORAGE_FIX = "use sqlite:///PATH, postgresql://..., journal:PATH or memory"


def check_storage(url: str, *, option: str = "--storage") -> None:
    """Refuse a storage URL that cannot work, before any work starts: unknown schemes, a missing
    database driver, a journal or SQLite file whose folder is missing, a file that is not a
    database. One :class:`CodesignError` line naming ``option`` and the fix."""
    if url == "memory":
        return
    scheme, sep, rest = url.partition(":")
    shown = _redacted(url)
    if scheme == "journal":
        _check_db_file(rest, shown, option, kind="journal", fix="e.g. journal:runs/x/journal.log")
        if rest and Path(rest).is_file() and Path(rest).stat().st_size:
            with open(rest, "rb") as fh:
                head = fh.read(1)
            if head not in (b"{", b"\n"):  # a journal is JSON lines
                raise CodesignError(
                    f"{option} {shown}: {rest} is not an Optuna journal file "
                    "(fix: pass a new file name, or the journal a study wrote)"
                )
        return
    base, _, driver = scheme.partition("+")
    if not sep or not rest.startswith("//"):
        raise CodesignError(f"{option} {shown}: not a storage URL ({_STORAGE_FIX})")
    if base == "sqlite":
        path = rest[2:].removeprefix("/").partition("?")[0]  # sqlite:///rel, sqlite:////abs
        if not path or path == ":memory:":
            raise CodesignError(
                f"{option} {shown}: an in-memory SQLite database is not shared between "
                "processes (fix: sqlite:///PATH to a file, or memory)"
            )
        _check_db_file(path, shown, option, kind="SQLite", fix="e.g. sqlite:///runs/x/study.db")
        if Path(path).is_file() and Path(path).stat().st_size:
            with open(path, "rb") as fh:
                if fh.read(16) != b"SQLite format 3\x00":
                    raise CodesignError(
                        f"{option} {shown}: {path} is not an SQLite database "
                        "(fix: pass a new file name, or the database a study wrote)"
                    )
        return
    if base == "postgresql":
        module = _PG_DRIVERS.get(driver)
        if module is None:
            raise CodesignError(
                f"{option} {shown}: unknown PostgreSQL driver {driver!r} "
                f"(fix: postgresql:// or postgresql+psycopg://)"
            )
        if not driver and _pg_driver() is None or driver and not _installed(module):
            fix = "psycopg2-binary, or codesign[postgres]" if module == "psycopg2" else module
            raise CodesignError(
                f"{option} {shown}: the PostgreSQL driver {module!r} is not installed "
                f"(fix: pip install {fix})"
            )
        return
    raise CodesignError(f"{option} {shown}: unsupported storage scheme {base!r} ({_STORAGE_FIX})")


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _pg_driver() -> str | None:
    """The driver a plain ``postgresql://`` URL uses: psycopg2 (``codesign[postgres]``), else
    psycopg 3. SQLAlchemy's own default differs between 2.0 (psycopg2) and 2.1 (psycopg)."""
    return next((m for m in ("psycopg2", "psycopg") if _installed(m)), None)


def _check_db_file(path: str, shown: str, option: str, *, kind: str, fix: str) -> None:
    if not path:
        raise CodesignError(f"{option} {shown}: no {kind} file path given (fix: {fix})")
    file = Path(path)
    folder = file.parent
    if file.exists() and not file.is_file():
        raise CodesignError(f"{option} {shown}: {path} is not a regular file (fix: {fix})")
    if not folder.is_dir():
        raise CodesignError(
            f"{option} {shown}: folder {str(folder)!r} does not exist (fix: create it first)"
        )
    if not os.access(folder, os.W_OK) or (file.exists() and not os.access(file, os.W_OK)):
        raise CodesignError(f"{option} {shown}: {path} is not writable (fix: check permissions)")


def _redacted(url: str) -> str:
    """The URL as shown in messages: no password, at most 200 characters."""
    if "@" in url and "://" in url:
        scheme, _, rest = url.partition("://")
        creds, _, host = rest.rpartition("@")
        url = f"{scheme}://{creds.partition(':')[0]}{':***' if ':' in creds else ''}@{host}"
    return repr(url if len(url) <= 200 else url[:100] + "...")


#: Pseudo file systems: a run directory there cannot hold files.
_SYSTEM_DIRS = (Path("/proc"), Path("/sys"), Path("/dev"))


def check_run_dir(path: Path, *, option: str = "--out") -> None:
    """Refuse a run directory that cannot be one, before any work starts: the file-system root,
    a path under a regular file, an existing non-folder, a pseudo file system, a folder that
    cannot be written. One :class:`CodesignError` line naming ``option`` and the fix."""
    text = str(path)
    shown = repr(text if len(text) <= 200 else text[:100] + "...")
    fix = "(fix: pass a new or empty folder, e.g. --out runs/mine)"
    try:
        full = Path(os.path.abspath(path))
        if full == Path(full.anchor):
            raise CodesignError(f"{option} {shown}: refusing to write into the root folder {fix}")
        if any(full == d or d in full.parents for d in _SYSTEM_DIRS):
            raise CodesignError(f"{option} {shown}: {full.parts[1]} is a system folder {fix}")
        if full.exists():
            if not full.is_dir():
                raise CodesignError(f"{option} {shown}: exists and is not a folder {fix}")
            if not os.access(full, os.W_OK | os.X_OK):
                raise CodesignError(f"{option} {shown}: folder is not writable {fix}")
            return
        parent = full.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise CodesignError(f"{option} {shown}: {str(parent)!r} is a file, not a folder {fix}")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise CodesignError(f"{option} {shown}: cannot create it in {str(parent)!r} {fix}")
    except OSError as exc:
        raise CodesignError(
            f"{option} {shown}: not a usable path ({exc.strerror or exc.__class__.__name__}) {fix}"
        ) from None


#: Where `codesign optimize` puts a run without ``--out``: ``runs/NAME``.
RUNS_DIR = Path("runs")


def default_run_dir(name: str) -> Path:
    """``runs/NAME``, refused unless it lies inside ``runs/`` (the config's ``name`` is checked
    to be a plain name; this guards runs whose config was built some other way)."""
    path = RUNS_DIR / name
    inside = Path(os.path.abspath(path)).parent == Path(os.path.abspath(RUNS_DIR))
    if not inside or name in ("", ".", ".."):
        raise CodesignError(
            f"run name {name!r}: runs/{name} is not a folder inside runs/ "
            '(fix: a plain name such as name = "my-run", or choose the folder with --out)'
        )
    return path


def storage_dir(url: str, name: str) -> Path:
    """The run directory of a study given by its storage URL: the folder of its SQLite or
    journal file, else ``runs/NAME`` (a server database has no folder)."""
    scheme, _, rest = url.partition(":")
    if scheme == "journal" and rest:
        return Path(rest).parent
    if scheme.partition("+")[0] == "sqlite" and rest.startswith("//"):
        path = rest[2:].removeprefix("/").partition("?")[0]
        if path and path != ":memory:":
            return Path(path).parent
    return default_run_dir(name)


def open_storage(url: str) -> Any:
    import optuna

    check_storage(url)
    if url == "memory":
        return optuna.storages.InMemoryStorage()
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = url.removeprefix("journal:")
        return optuna.storages.JournalStorage(
            JournalFileBackend(path, lock_obj=_journal_lock(path))
        )
    if url.startswith(("sqlite:", "postgresql", "mysql")):
        if url.startswith("postgresql://"):
            url = f"postgresql+{_pg_driver()}://" + url.removeprefix("postgresql://")
        # no Optuna heartbeats: every storage kind uses the trials' own (reap_stale), and
        # Optuna's would fail stale trials without retrying them, and only before a new trial
        storage = optuna.storages.RDBStorage(
            url,
            engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None,
        )
        if url.startswith("sqlite:"):
            _sqlite_wal(storage)
        return storage
    raise CodesignError(
        f"--storage {url!r}: use a sqlite:///, postgresql:// URL, journal:PATH or memory"
    )


def _journal_lock(path: str) -> Any:
    """The journal's write lock: ``flock`` on ``PATH.flock`` where the platform has it, which
    the kernel releases when its holder dies. Optuna's default (a symlink, for NFSv2) outlives
    a killed holder, and every other process then waits its 30 s grace period before breaking
    it. ``flock`` needs a file system with working locks (local, or NFSv4)."""
    from optuna.storages.journal import JournalFileSymlinkLock

    try:
        import fcntl
    except ImportError:  # no flock (Windows): Optuna's lock
        return JournalFileSymlinkLock(path)

    class FlockLock:  # what JournalFileBackend calls: acquire() and release()
        def __init__(self) -> None:
            self._fd: int | None = None

        def acquire(self) -> bool:
            fd = os.open(f"{path}.flock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return True

        def release(self) -> None:
            fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)  # closing the descriptor releases the lock

    return FlockLock()


def _sqlite_wal(storage: Any) -> None:
    """WAL journal and normal sync: several readers and one writer at a time, without an fsync
    per small write (each trial writes several rows)."""
    from sqlalchemy import event

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()


# --- Trial ownership, stale trials and the exact budget -------------------------------------
#
# Every trial records its owner process (host, boot, pid and the pid's start time) when it
# starts, and a heartbeat (a user attribute, every HEARTBEAT_S) while it runs, in any storage
# (Optuna's own heartbeats are RDB-only). A RUNNING trial of another process is stale when its
# owner is on this host and gone (at once, without a grace period), or when its heartbeat is
# older than GRACE_S. Stale trials are failed with ``not_counted`` "killed: ..." and their
# design (the parameters they had) is enqueued again.
#
# The budget counts trials that finished with a verdict on their design: COMPLETE, or FAIL with
# an ``infeasible`` reason. A trial takes a budget slot when it starts: its rank is the number
# of slot holders (counted, RUNNING or WAITING trials, less the stale and over-budget ones)
# with a smaller trial number; a trial ranked at or past the budget is PRUNED with
# ``not_counted`` "over budget" before it proposes anything. Trial numbers are handed out
# atomically by every storage, and a trial that ends counted held a slot all along, so the
# counted trials never exceed the budget, whatever the number of workers.

#: What a killed, interrupted or over-budget trial records instead of a design verdict.
NOT_COUNTED = "not_counted"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _pid_start(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, /proc/PID/stat field 22), to tell a
    live process from a later one that reuses its pid; ``"Z"`` for a zombie; None where there
    is no /proc or no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return "Z" if fields[0] in ("Z", "X") else fields[19]


def process_owner() -> dict[str, Any]:
    """This process, as recorded in the trials it runs (user attribute ``owner``)."""
    import socket

    return {
        "host": socket.gethostname(),
        "boot": _boot_id(),
        "pid": os.getpid(),
        "pid_start": _pid_start(os.getpid()),
    }


def _owner_gone(owner: dict[str, Any], me: dict[str, Any]) -> str | None:
    """Why ``owner`` is known to be gone (a process of this host that ended, or of an earlier
    boot of it); None when it runs, or runs elsewhere."""
    if owner.get("host") != me["host"]:
        return None
    pid = owner.get("pid")
    where = f"process {pid} on {owner.get('host')}"
    if owner.get("boot") and me["boot"] and owner["boot"] != me["boot"]:
        return f"{where} ended (the host restarted)"
    if not isinstance(pid, int):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"{where} ended"
    except (PermissionError, OSError):
        return None
    start = _pid_start(pid)
    if start == "Z":
        return f"{where} ended"
    if start is not None and owner.get("pid_start") and start != owner["pid_start"]:
        return f"{where} ended (its pid was reused)"
    return None


def _is_mine(trial: Any, me: dict[str, Any]) -> bool:
    owner = trial.user_attrs.get("owner") or {}
    return all(owner.get(k) == me[k] for k in ("host", "pid", "pid_start"))


def _stale_reason(trial: Any, me: dict[str, Any], now: float) -> str | None:
    """Why a RUNNING trial of another process is stale, or None."""
    owner = trial.user_attrs.get("owner")
    if owner:
        gone = _owner_gone(owner, me)
        if gone:
            return gone
        if owner.get("host") == me["host"]:
            return None  # a live process of this host: however slow, it is running
        beat = float(trial.user_attrs.get("heartbeat", owner.get("time", now)))
        if now - beat > GRACE_S:
            return f"no heartbeat from process {owner.get('pid')} on {owner.get('host')} " + (
                f"for {now - beat:.0f} s"
            )
        return None
    start = trial.datetime_start
    if start is not None and now - start.timestamp() > GRACE_S:
        return f"no owner recorded {now - start.timestamp():.0f} s after it started"
    return None


def holds_slot(trial: Any) -> bool:
    """Whether a trial takes one of the budget's slots: counted (COMPLETE, or FAIL with a
    design verdict), or RUNNING or WAITING and not marked ``not_counted``."""
    import optuna

    state = trial.state
    if state == optuna.trial.TrialState.COMPLETE:
        return True
    if state == optuna.trial.TrialState.FAIL:  # killed after its verdict, before it was told:
        # not counted (its design was retried)
        return "infeasible" in trial.user_attrs and NOT_COUNTED not in trial.user_attrs
    if state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING):
        return NOT_COUNTED not in trial.user_attrs
    return False


def is_counted(trial: Any) -> bool:
    """Whether a finished trial counts against the budget: COMPLETE, or FAIL with a design
    verdict (``infeasible``: unbuildable, quality unanswerable, pricing error); not a trial
    whose process died or that found the budget spent."""
    return trial.state.is_finished() and holds_slot(trial)


def counted_trials(study: Any) -> int:
    """The trials the budget counts (:func:`is_counted`)."""
    return sum(1 for t in study.get_trials(deepcopy=False) if is_counted(t))


def reap_stale(study: Any, trials: list[Any] | None = None) -> list[int]:
    """Fail the stale RUNNING trials of other processes (:func:`_stale_reason`) with
    ``not_counted`` "killed: REASON", and enqueue each one's parameters again (user attribute
    ``retry_of``); returns the numbers of the trials failed here. Another process failing the
    same trial at the same time is harmless: only one of them succeeds."""
    import optuna

    if isinstance(study._storage, optuna.storages.InMemoryStorage):
        return []  # one process: nothing of another can be running
    if trials is None:
        trials = study.get_trials(deepcopy=False)
    me, now = process_owner(), time.time()
    reaped = []
    for t in trials:
        if t.state != optuna.trial.TrialState.RUNNING or _is_mine(t, me):
            continue
        why = _stale_reason(t, me, now)
        if why is None or not _fail_trial(study, t, f"killed: {why}"):
            continue
        reaped.append(t.number)
        params = {**t.system_attrs.get("fixed_params", {}), **t.params}
        if params and not any(u.user_attrs.get("retry_of") == t.number for u in trials):
            study.enqueue_trial(params, user_attrs={"retry_of": t.number})
    return reaped


def _fail_trial(study: Any, trial: Any, reason: str) -> bool:
    """RUNNING -> FAIL with ``not_counted`` = reason; False when it finished meanwhile."""
    import optuna

    storage = study._storage
    for attempt in range(3):
        try:
            storage.set_trial_user_attr(trial._trial_id, NOT_COUNTED, reason)
            storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
            return True
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        except optuna.exceptions.StorageInternalError:
            time.sleep(0.1 * (attempt + 1))  # a busy database: try again
    return False


def _slot_rank(study: Any, number: int) -> int:
    """How many slot holders precede trial ``number``, after failing stale trials."""
    trials = study.get_trials(deepcopy=False)
    reaped = set(reap_stale(study, trials))
    return sum(1 for t in trials if t.number < number and t.number not in reaped and holds_slot(t))


def open_slots(study: Any, budget: int) -> tuple[int, int]:
    """(slots nobody holds, WAITING trials within the budget): what this process can run."""
    import optuna

    holders = sorted(
        (t for t in study.get_trials(deepcopy=False) if holds_slot(t)), key=lambda t: t.number
    )
    waiting = sum(1 for t in holders[:budget] if t.state == optuna.trial.TrialState.WAITING)
    return max(0, budget - len(holders)), waiting


def settle_stale(study: Any, *, poll_s: float = 0.5) -> list[int]:
    """Fail the stale trials before a process ends; returns their numbers. A trial killed
    between its creation and the first thing its objective does (record its owner) has no
    owner to check: it is stale GRACE_S after it started. Wait for those (at most GRACE_S, only
    while such a trial is RUNNING), so that a rerun leaves no trial RUNNING."""
    import optuna

    deadline = time.time() + GRACE_S + 2 * poll_s
    reaped: list[int] = []
    while True:
        reaped += reap_stale(study)
        unowned = [
            t
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if "owner" not in t.user_attrs
        ]
        if not unowned or time.time() >= deadline:
            return reaped
        time.sleep(poll_s)


def fill_budget(
    study: Any,
    budget: int,
    optimize: Callable[[int], None],
    *,
    deadline: float = math.inf,
    sample: bool = True,
) -> None:
    """Run trials until every budget slot is held: the WAITING trials within the budget
    (retries of killed trials, designs enqueued by a process that died) and, with ``sample``,
    new trials for the free slots. Stops when a round adds nothing (the slots are held by other
    workers' running trials, or the time is up)."""
    while time.monotonic() < deadline:
        reap_stale(study)
        free, waiting = open_slots(study, budget)
        free = free if sample else 0
        if free + waiting == 0:
            return
        before = len(study.get_trials(deepcopy=False))
        optimize(free + waiting)
        if len(study.get_trials(deepcopy=False)) == before and not waiting:
            return  # stopped from outside (a time budget), nothing ran


class _Heartbeat:
    """A heartbeat every HEARTBEAT_S from a thread while the trial runs (its owner is recorded
    first), so that other processes can tell a running trial from a killed one in any
    storage."""

    def __init__(self, study: Any, trial: Any) -> None:
        import threading

        self._storage = study._storage
        self._trial_id = trial._trial_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        import optuna

        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._storage.set_trial_user_attr(self._trial_id, "heartbeat", time.time())
            except optuna.exceptions.UpdateFinishedTrialError:
                return  # failed by another process meanwhile
            except Exception:  # a busy database: beat again next time
                continue

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def make_sampler(name: str, seed: int, *, conditional: bool, cfg: RunConfig | None = None) -> Any:
    """SEARCH.md §5: TPE (multivariate, grouped) for the joint conditional space; GP for
    static spaces; NSGA-II, random and the scalarised skopt baseline (which needs ``cfg`` for
    its flattened space and constraint scales) as baselines."""
    import optuna

    if name == "auto":
        name = "tpe" if conditional else "gp"
    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, constant_liar=True
        )
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=20)
    if name == "skopt":
        if cfg is None:
            raise CodesignError("the skopt sampler needs the run config (its search space)")
        from codesign.search.skopt_sampler import SkoptScalarizedSampler
        from codesign.search.space import search_space

        return SkoptScalarizedSampler(
            space=search_space(cfg),
            directions=cfg.directions(),
            constraint_scales=constraint_scales(cfg),
            seed=seed,
        )
    return optuna.samplers.RandomSampler(seed=seed)


def resolve_strategy(cfg: RunConfig) -> str:
    """``auto``: two-level when the software space (at each hardware point, if there are any)
    is small enough for the exact inner loop (:func:`codesign.search.two_level.exact_inner_front`);
    joint otherwise. On the benchmark's enumerable instance (bench/bench_search.py,
    docs/search.md) the exact two-level search reaches the whole front in about 30 trials,
    while joint TPE leads the two-level search with a sampled inner loop only at small
    budgets and ties it beyond 100 trials."""
    if cfg.strategy != "auto":
        return cfg.strategy
    from codesign.search.two_level import EXACT_INNER_LIMIT, space_bound

    # an enumerable space is searched exactly, with or without hardware knobs
    return "two-level" if space_bound(cfg) <= 50 * EXACT_INNER_LIMIT else "joint"


def constraint_scales(cfg: RunConfig) -> dict[str, float]:
    """The size of a unit violation of each constraint (its own threshold), so violations in
    seconds, quality points and mm2 can be summed."""
    scales = {}
    if cfg.sla_ms is not None:
        scales["sla"] = cfg.sla_ms / 1e3
    if cfg.quality_floor is not None:
        scales["quality_floor"] = max(abs(cfg.quality_floor), 1e-3)
    if cfg.area_budget_mm2 is not None:
        scales["area"] = cfg.area_budget_mm2
    return scales


@dataclass(frozen=True)
class StudyResult:
    run_dir: Path
    storage: str
    finished: int
    feasible: int
    front: list[dict[str, Any]]
    #: Trials whose design could not be built (over a chip's or socket's capacity).
    unbuildable: int = 0
    #: Trials whose design was priced, and trials answered from the design cache.
    evaluated: int = 0
    cached: int = 0
    #: The run stopped at its time budget before its trial budget.
    stopped_by_time: bool = False
    #: The two-level strategy's outer rounds, every worker's
    #: (:func:`codesign.search.two_level.outer_rounds`); empty for the joint search.
    outer_rounds: list[dict[str, Any]] = field(default_factory=list)
    #: The reference point its outer loop measures hypervolume from, in objective units.
    reference_point: dict[str, float] | None = None
    #: Why the front is empty (:func:`why_empty`); empty when it is not.
    why_empty: list[str] = field(default_factory=list)
    #: Trials that do not count against the budget, by why (``killed``, ``interrupted``,
    #: ``over budget``: the first word of their ``not_counted`` reason).
    not_counted: dict[str, int] = field(default_factory=dict)


def _needs_replay(cfg: RunConfig) -> bool:
    wanted = "quality" in cfg.objectives or cfg.quality_floor is not None
    return wanted and cfg.quality_source == "replay"


def _quality_options(cfg: RunConfig):
    from codesign.quality.datasets import DataOptions

    return DataOptions(
        samples=cfg.quality_samples,
        val_samples=cfg.quality_val_samples,
        seed=cfg.quality_seed,
        max_rows=cfg.quality_max_rows,
    )


def prepare_quality(cfg: RunConfig, reporter: Any = None) -> dict[str, Any] | None:
    """Train the workload's models on the quality dataset unless the quality cache holds them
    (``codesign quality train`` with the config's ``[quality]`` options), so that every design's
    quality is replayed from trained models' scores. ``None`` when quality is not replayed."""
    if not _needs_replay(cfg):
        return None
    from codesign.quality.api import train_family

    return train_family(
        dataset=cfg.quality_dataset,
        family=",".join(cfg.models),
        options=_quality_options(cfg),
        reporter=reporter,
    )


def run_study(
    cfg: RunConfig,
    *,
    run_dir: Path,
    storage: str | None = None,
    worker: int = 0,
    progress: Callable[[dict[str, Any]], None] | None = None,
    write_outputs_after: bool = True,
    create_only: bool = False,
) -> StudyResult:
    import optuna

    from codesign.search.space import InfeasibleDesign, design_key, evaluate_design, suggest_design

    optuna.logging.set_verbosity(
        optuna.logging.ERROR
    )  # infeasible designs are recorded, not logged
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    run_dir.mkdir(parents=True, exist_ok=True)
    url = storage_url(run_dir, storage)
    study = optuna.create_study(
        storage=open_storage(url),
        study_name=cfg.name,
        directions=cfg.directions(),
        sampler=make_sampler(
            cfg.sampler, cfg.seed + worker, conditional=cfg.max_stages > 1, cfg=cfg
        ),
        load_if_exists=True,
    )
    # what optuna-dashboard shows as the objectives' names (log10 where the study stores it)
    if study.metric_names != metric_names(cfg):
        study.set_metric_names(metric_names(cfg))
    attrs = study.user_attrs
    if "config_hash" in attrs and attrs["config_hash"] != cfg.config_hash():
        raise CodesignError(
            f"{url}: study {cfg.name!r} was created from a different config "
            f"(hash {attrs['config_hash']}, now {cfg.config_hash()}); use a new --out directory"
        )
    if "config_hash" not in attrs:
        study.set_user_attr("config_hash", cfg.config_hash())
        study.set_user_attr("codesign_version", __version__)
        study.set_user_attr("optuna_version", optuna.__version__)
        study.set_user_attr("python", platform.python_version())
    if worker == 0:  # the latest optimize run's budget, sampler and seed are what workers use
        study.set_user_attr("config", json.loads(json.dumps(cfg.__dict__, default=list)))
        study.set_user_attr("objectives", list(cfg.objectives))
        study.set_user_attr("seed", cfg.seed)
        study.set_user_attr("sampler", cfg.sampler)
        study.set_user_attr("strategy", resolve_strategy(cfg))
    trained = prepare_quality(cfg)  # a no-op when cached (the CLI trains first, with progress)
    if trained is not None and worker == 0:
        study.set_user_attr(
            "quality_models",
            {m["model"]: {"auc": m["auc"], "spec_hash": m["spec_hash"]} for m in trained["models"]},
        )
        study.set_user_attr("quality_dataset_key", trained["dataset_key"])
    cache: dict[str, dict[str, float]] = {}
    # designs the two-level strategy's exact inner loop priced and enqueued: their trials read
    # the metrics instead of pricing them again
    prepriced: dict[str, dict[str, float]] = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if "result" in t.user_attrs:
            cache[t.user_attrs["result"]["design_key"]] = t.user_attrs["result"]["metrics"]

    def objective(trial: optuna.Trial) -> list[float]:
        trial.set_user_attr("owner", {**owner, "time": time.time()})  # first: see settle_stale
        # a trial's rank is at most its number (numbers are dense): only trials numbered past
        # the budget (after kills, retries or other workers' trials) need to count the holders
        if trial.number >= cfg.trials and _slot_rank(study, trial.number) >= cfg.trials:
            # every slot is taken (by trials of other workers): record nothing, stop
            trial.set_user_attr(NOT_COUNTED, "over budget")
            trial.set_user_attr("worker", worker)
            study.stop()
            raise optuna.TrialPruned("over budget")
        with _Heartbeat(study, trial):
            return priced(trial)

    def priced(trial: optuna.Trial) -> list[float]:
        try:
            design = suggest_design(trial, cfg)
            key = design_key(design)
            metrics = cache.get(key)
            trial.set_user_attr("cached", metrics is not None)
            if metrics is None:
                # priced already by the exact inner loop, in its batch, or priced now
                metrics = prepriced.pop(key, None) or evaluate_design(design, cfg).metrics
                cache[key] = metrics
        except InfeasibleDesign as exc:
            trial.set_user_attr("infeasible", str(exc))
            trial.set_user_attr("worker", worker)
            raise
        except BaseException as exc:  # a run-wide error or Ctrl-C: no verdict on the design
            trial.set_user_attr(NOT_COUNTED, f"interrupted: {type(exc).__name__}")
            trial.set_user_attr("worker", worker)
            raise
        trial.set_user_attr(
            "result", {"worker": worker, "design": design, "design_key": key, "metrics": metrics}
        )
        record_constraints(trial, cfg, metrics)
        return _objective_values(cfg, metrics)

    def finished() -> int:
        return counted_trials(study)

    deadline = time.monotonic() + cfg.time_budget_s if cfg.time_budget_s is not None else math.inf

    def callback(study_: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if progress:
            progress(
                {
                    "finished": finished(),
                    "trials": cfg.trials,
                    "trial": trial.number,
                    "state": trial.state.name,
                    "feasible": _feasible_count(study_),
                }
            )
        if finished() >= cfg.trials or time.monotonic() >= deadline:
            study_.stop()

    def optimize(n_trials: int) -> None:
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            return
        study.optimize(
            objective,
            n_trials=n_trials,
            timeout=None if math.isinf(left_s) else left_s,
            catch=(InfeasibleDesign,),
            callbacks=[callback],
            gc_after_trial=False,
        )

    owner = process_owner()
    reap_stale(study)  # trials of killed processes, even when nothing is left to run
    two_level = resolve_strategy(cfg) == "two-level"
    if not create_only and cfg.trials - finished() > 0 and two_level:
        from codesign.search.two_level import run_two_level

        run_two_level(
            study, cfg, worker=worker, optimize=optimize, finished=finished, priced=prepriced
        )
    while not create_only:
        # the two-level strategy may stop short of the budget (every hardware point searched):
        # then only the enqueued designs still waiting (retries of killed trials) run here
        fill_budget(study, cfg.trials, optimize, deadline=deadline, sample=not two_level)
        if not settle_stale(study):  # a slot freed by a trial failed now is filled again
            break
    if write_outputs_after:
        write_outputs(study, cfg, run_dir, url)
    front = front_rows(study, cfg)
    counts = trial_counts(study)
    from codesign.search.two_level import outer_rounds

    return StudyResult(
        run_dir,
        url,
        finished(),
        _feasible_count(study),
        front,
        counts["unbuildable"],
        counts["evaluated"],
        counts["cached"],
        stopped_by_time=time.monotonic() >= deadline and finished() < cfg.trials,
        outer_rounds=outer_rounds(study),
        reference_point=study.user_attrs.get("reference_point"),
        why_empty=[] if front else why_empty(study, cfg),
        not_counted=not_counted_counts(study),
    )


#: Per constraint: the config key, the metric it bounds, whether lower is better, how a
#: value is shown, and what the closest design is called.
_MISSES = {
    "sla": ("sla_ms", "p95_latency_s", True, lambda v: f"{v * 1e3:.3g} ms", "fastest", "p95"),
    "quality_floor": ("quality_floor", "quality", False, lambda v: f"{v:.4g}", "best", "quality"),
    "area": ("area_budget_mm2", "area_mm2", True, lambda v: f"{v:.4g} mm2", "smallest", "area"),
}


def why_empty(study: Any, cfg: RunConfig) -> list[str]:
    """Why no trial is feasible, one line per constraint with its closest miss, e.g.
    ``sla_ms 0.001: the fastest design's p95 was 0.42 ms (trial 7); no design met it``, and a
    line for trials that failed before they were priced (unbuildable designs, quality the table
    cannot answer) with their most common reason."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    done = [
        t
        for t in trials
        if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
    ]
    if not done:
        return ["no trial finished (fix: raise --trials or --time-budget)"]
    lines = []
    priced = _complete(study)
    names = constraint_names(cfg)
    for name in names:
        key, metric, lower, fmt, best_word, label = _MISSES[name]
        limit = getattr(cfg, key)
        scored = [(_result(t)["metrics"][metric], t.number) for t in priced]
        if not scored:
            continue
        value, number = min(scored, key=lambda x: (x[0] if lower else -x[0], x[1]))
        met = sum(1 for t in priced if trial_constraints(t, names).get(name, 1) <= 0)
        how = (
            "no design met it"
            if not met
            else f"{met} design{'s' if met != 1 else ''} met it but missed another constraint"
        )
        lines.append(
            f"{key} {limit:g}: the {best_word} design's {label} was {fmt(value)} "
            f"(trial {number}); {how}"
        )
    failed: dict[str, list[int]] = {}
    for t in done:
        reason = t.user_attrs.get("infeasible")
        if t.state == optuna.trial.TrialState.FAIL and reason:
            failed.setdefault(" ".join(str(reason).split()), []).append(t.number)
    if failed:
        n = sum(len(v) for v in failed.values())
        reason, numbers = max(failed.items(), key=lambda kv: (len(kv[1]), -kv[1][0]))
        lines.append(
            f"{n} trial{'s' if n != 1 else ''} failed before pricing; most often "
            f"({len(numbers)}): {reason} (trial {numbers[0]})"
        )
    if not lines:
        lines.append(f"no feasible design among {len(done)} finished trials")
    return lines


def trial_counts(study: Any) -> dict[str, int]:
    """Finished trials by what they cost: ``evaluated`` (a design priced), ``cached`` (a
    design already priced: no evaluation), ``unbuildable`` (over a chip's capacity)."""
    import optuna

    counts = {"evaluated": 0, "cached": 0, "unbuildable": 0}
    for t in study.get_trials(deepcopy=False):
        if str(t.user_attrs.get("infeasible", "")).startswith("unbuildable"):
            counts["unbuildable"] += 1
        elif t.state == optuna.trial.TrialState.COMPLETE:
            counts["cached" if t.user_attrs.get("cached") else "evaluated"] += 1
    return counts


def not_counted_counts(study: Any) -> dict[str, int]:
    """Trials outside the budget by reason: ``killed`` (their process died; their design ran
    again), ``interrupted`` (a run-wide error or Ctrl-C) and ``over budget``."""
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        reason = str(t.user_attrs.get(NOT_COUNTED, ""))
        if reason:
            kind = "over budget" if reason.startswith("over budget") else reason.split(":")[0]
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def _feasible_count(study: Any) -> int:
    import optuna

    return sum(
        1
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if all(v <= 0 for v in (t.constraints or {}).values())
    )


def front_rows(study: Any, cfg: RunConfig) -> list[dict[str, Any]]:
    """The feasible Pareto front, sorted by the first objective."""
    import numpy as np

    from codesign.search.pareto import pareto_mask

    trials = _complete(study)
    feasible = [t for t in trials if _is_feasible(t)]
    if not feasible:
        return []
    values = np.array([[_result(t)["metrics"][o] for o in cfg.objectives] for t in feasible])
    mask = pareto_mask(values, cfg.directions())
    rows, seen = [], set()
    for t, on in sorted(zip(feasible, mask, strict=True), key=lambda x: x[0].number):
        point = tuple(_result(t)["metrics"][o] for o in cfg.objectives)
        if on and point not in seen:  # a re-proposed design or an exact tie: earliest trial
            seen.add(point)
            rows.append(_row(t, cfg))
    first = cfg.objectives[0]
    sign = -1 if OBJECTIVES[first][0] == "maximize" else 1
    return sorted(rows, key=lambda r: (sign * r["objectives"][first], r["trial"]))


def _complete(study: Any) -> list[Any]:
    import optuna

    return [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if _result(t)
    ]


def _row(trial: Any, cfg: RunConfig) -> dict[str, Any]:
    result = _result(trial)
    design = result["design"]
    summary = " -> ".join(
        f"{s['model']} {s['items']}>{s['keep']} on {s['target']}"
        + (f" {s['knobs']['rows']}x{s['knobs']['cols']}" if "rows" in s.get("knobs", {}) else "")
        + f" x{s['engines']}"
        for s in design["stages"]
    )
    return {
        "trial": trial.number,
        "summary": summary,
        "objectives": {o: result["metrics"][o] for o in cfg.objectives},
        "metrics": result["metrics"],
        "design": design,
    }


def write_outputs(study: Any, cfg: RunConfig, run_dir: Path, url: str) -> None:
    """plans/ (one JSON per front point), trials.csv and report.html, rebuilt from storage."""
    import numpy as np
    import optuna

    from codesign.plan import build_plan, fallback_lines
    from codesign.report.data import constraint_lines
    from codesign.report.html import render_report
    from codesign.search.pareto import hypervolume_history
    from codesign.search.space import context

    plans_dir = run_dir / "plans"
    plans_dir.mkdir(parents=True, exist_ok=True)
    for old in plans_dir.glob("plan-*.json"):
        old.unlink()
    front = front_rows(study, cfg)
    plans = []
    evaluation_context = context(cfg)
    for row in front:
        plan = build_plan(
            run=cfg.name,
            trial=row["trial"],
            design=row["design"],
            context=evaluation_context,
            objectives=row["objectives"],
            provenance={
                "cost_model": cfg.cost_model,
                "quality_source": cfg.quality_source,
                "quality_metric": cfg.quality_metric,
                **(
                    {
                        "quality_dataset": cfg.quality_dataset,
                        "quality_dataset_key": study.user_attrs.get("quality_dataset_key"),
                        "quality_models": study.user_attrs.get("quality_models"),
                    }
                    if cfg.quality_source == "replay"
                    else {}
                ),
                "qps": cfg.qps,
                "seed": cfg.seed,
                "config_hash": cfg.config_hash(),
                "optuna_version": optuna.__version__,
                "storage": url,
            },
        )
        path = plans_dir / f"plan-{row['trial']:05d}.json"
        _atomic_write(path, plan.to_json())
        plans.append(
            {
                "trial": row["trial"],
                "file": f"plans/{path.name}",
                "summary": row["summary"],
                "objectives": row["objectives"],
                "fallbacks": fallback_lines(plan),
            }
        )
    all_trials = study.get_trials(deepcopy=False)
    header = [
        "number",
        "state",
        "worker",
        "feasible",
        *cfg.objectives,
        "p99_latency_s",
        "unloaded_latency_s",
        "stability_limit_qps",
        *[m for m in ("power_w", "max_qps") if m not in cfg.objectives],
        "infeasible_reason",
        "not_counted",
        "design",
    ]
    lines = []
    for t in all_trials:
        r = _result(t) or {}
        m = r.get("metrics", {})
        lines.append(
            [
                t.number,
                t.state.name,
                r.get("worker", t.user_attrs.get("worker", "")),
                _is_feasible(t) if m else "",
                *[m.get(o, "") for o in cfg.objectives],
                m.get("p99_latency_s", ""),
                m.get("unloaded_latency_s", ""),
                m.get("stability_limit_qps", ""),
                *[m.get(k, "") for k in ("power_w", "max_qps") if k not in cfg.objectives],
                t.user_attrs.get("infeasible", ""),
                t.user_attrs.get(NOT_COUNTED, ""),
                json.dumps(t.params, sort_keys=True),
            ]
        )
    tmp = run_dir / "trials.csv.tmp"
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(lines)
    os.replace(tmp, run_dir / "trials.csv")
    complete = [t for t in all_trials if t.state == optuna.trial.TrialState.COMPLETE and _result(t)]
    values = np.array([[_result(t)["metrics"][o] for o in cfg.objectives] for t in complete])
    feasible = np.array([_is_feasible(t) for t in complete])
    bounds = objective_bounds(cfg)
    hv = (
        hypervolume_history(
            values,
            feasible,
            cfg.directions(),
            lower=bounds[0],
            upper=bounds[1],
            log=[OBJECTIVES[o][1] for o in cfg.objectives],
        )
        if len(complete)
        else np.array([])
    )
    objectives = [
        {
            "name": o,
            "direction": OBJECTIVES[o][0],
            # the quality axis names its metric (e.g. ndcg_recpipe@64)
            "label": cfg.quality_metric if o == "quality" else OBJECTIVES[o][3],
            "unit": OBJECTIVES[o][2],
            "log": OBJECTIVES[o][1],
        }
        for o in cfg.objectives
    ]
    trials_out = [
        {
            "number": t.number,
            "state": t.state.name,
            "values": [_result(t)["metrics"][o] for o in cfg.objectives] if _result(t) else None,
            "feasible": _is_feasible(t),
            "params": t.params,
            "user_attrs": {
                **{k: v for k, v in t.user_attrs.items() if k != "result"},
                **{k: v for k, v in (_result(t) or {}).items() if k in ("worker", "metrics")},
            },
        }
        for t in all_trials
    ]
    meta = {
        "run": cfg.name,
        "config": cfg.source_path,
        "config_hash": cfg.config_hash(),
        "seed": cfg.seed,
        "sampler": cfg.sampler,
        "strategy": (
            f"two-level ({cfg.inner_trials} trials per hardware point)"
            if resolve_strategy(cfg) == "two-level"
            else "joint"
        ),
        "storage": url,
        "trials": len(all_trials),
        "complete": len(complete),
        "feasible": int(feasible.sum()) if len(complete) else 0,
        "qps": cfg.qps,
        "quality": f"{cfg.quality_metric} ({cfg.quality_source})",
        "codesign": __version__,
        "optuna": optuna.__version__,
    }
    measured = []
    for path in sorted((run_dir / "measured").glob("*.json")):
        try:
            measured.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # a file being written, or not a run: the report leaves it out
    html = render_report(
        title=f"codesign: {cfg.name}",
        objectives=objectives,
        trials=trials_out,
        front=[r["trial"] for r in front],
        hv_history=[float(v) for v in hv],
        plans=plans,
        meta=meta,
        measured=measured,
        constraints=constraint_lines(cfg),
    )
    _atomic_write(run_dir / "report.html", html)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def load_existing(
    run_dir_or_storage: str, *, out_dir: Path | None = None
) -> tuple[Any, RunConfig, Path]:
    """Open a study from a run directory (or a storage URL) and rebuild its config. The run
    directory is the one given, else ``out_dir``, else the storage file's folder
    (:func:`storage_dir`): never the current folder by accident."""
    import optuna

    path = Path(run_dir_or_storage)
    run_dir: Path | None
    if path.is_dir():
        url, run_dir = storage_url(path, None), path
        if not (path / STUDY_FILE).exists():
            raise CodesignError(f"{path}: no {STUDY_FILE} here; run 'codesign optimize' first")
    else:
        url, run_dir = run_dir_or_storage, out_dir
    storage = open_storage(url)
    summaries = optuna.get_all_study_summaries(storage)
    if not summaries:
        raise CodesignError(f"{url}: no study in this storage")
    study = optuna.load_study(study_name=summaries[0].study_name, storage=storage)
    raw = study.user_attrs.get("config")
    if raw is None:
        raise CodesignError(f"{url}: study has no recorded config")
    cfg = _config_from_attrs(raw)
    if run_dir is None:
        run_dir = storage_dir(url, cfg.name)
    return study, cfg, run_dir


def _config_from_attrs(raw: dict[str, Any]) -> RunConfig:
    fields = dict(raw)
    for key in ("models", "targets", "engines", "accel_rows", "accel_cols", "objectives"):
        fields[key] = tuple(fields[key])
    fields["shrink_log2"] = tuple(fields["shrink_log2"])
    if "batch_split_log2" in fields:
        fields["batch_split_log2"] = tuple(fields["batch_split_log2"])
    if "hw" in fields:
        fields["hw"] = tuple(
            (target, tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in knobs))
            for target, knobs in fields["hw"]
        )
    known = {f.name for f in dataclasses.fields(RunConfig)}
    missing = sorted(known - set(fields) - _DEFAULTED)
    if missing or set(fields) - known:
        raise CodesignError(
            f"study was created by another codesign version (config fields differ: "
            f"{', '.join(missing or sorted(set(fields) - known))}); re-run it with "
            "`codesign optimize` into a new --out directory"
        )
    return RunConfig(**fields)


_DEFAULTED = {
    f.name
    for f in dataclasses.fields(RunConfig)
    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
}
