"""Four `codesign worker` processes on one study, for each storage kind (SQLite, journal and,
where the machine has a server, PostgreSQL): exactly the budget of counted trials, no trial
number twice, nothing left RUNNING, every counted trial run by one of the workers."""

from __future__ import annotations

import subprocess
from collections import Counter

import pytest
from conftest import codesign_command

from codesign.config import load_run_config
from codesign.search.study import is_counted, open_storage, run_study

BUDGET = 16
WORKERS = 4


def _run_workers(url: str, config, run_dir) -> list:
    import optuna

    cfg = load_run_config(config)
    run_study(cfg, run_dir=run_dir, storage=url, create_only=True, write_outputs_after=False)
    procs = [
        subprocess.Popen(
            codesign_command("worker", url, "--worker-id", str(k)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for k in range(1, WORKERS + 1)
    ]
    for p in procs:
        _, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr.decode()[-2000:]
    study = optuna.load_study(study_name="reliable", storage=open_storage(url))
    return study.get_trials(deepcopy=False)


def _check(trials) -> None:
    import optuna

    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials)))  # no number twice, none missing
    counted = [t for t in trials if is_counted(t)]
    assert len(counted) == BUDGET
    assert not [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    # the trials past the budget found every slot taken and proposed nothing
    for t in trials:
        if not is_counted(t):
            assert t.user_attrs.get("not_counted") == "over budget" and not t.params
    workers = Counter((t.user_attrs.get("result") or t.user_attrs).get("worker") for t in counted)
    assert set(workers) <= set(range(1, WORKERS + 1)) and len(workers) >= 2


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_four_workers_spend_exactly_the_budget(tmp_path, run_config, kind):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    url = (
        f"sqlite:///{run_dir / 'study.sqlite3'}"
        if kind == "sqlite"
        else f"journal:{run_dir / 'journal.log'}"
    )
    _check(_run_workers(url, run_config(BUDGET), run_dir))


def test_four_workers_on_postgresql(tmp_path, run_config, postgres_server):
    url = postgres_server("workers")
    _check(_run_workers(url, run_config(BUDGET), tmp_path / "run"))
