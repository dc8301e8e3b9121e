"""optuna-dashboard reads a finished study as codesign means it: named objectives (log10 where
the study stores the log), and constraint values where the dashboard looks for them, so its
best trials can be told feasible or not (issue 15)."""

from __future__ import annotations

import json
import threading
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from test_optimize import SMALL  # tests/search is on sys.path (pytest prepend import mode)

from codesign.config import parse_run_config
from codesign.search.results import metric_names
from codesign.search.study import run_study

dashboard = pytest.importorskip("optuna_dashboard")


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def _get(base: str, path: str) -> dict:
    with urllib.request.urlopen(base + path, timeout=30) as response:
        return json.load(response)


def test_dashboard_api_reads_metric_names_and_constraints(tmp_path):
    data = json.loads(json.dumps(SMALL))
    # 20 ms: some of these designs meet it and some do not (both kinds below)
    data["constraints"] = {"sla_ms": 20}
    data["search"]["trials"] = 12
    cfg = parse_run_config(data, origin="dashboard")
    result = run_study(cfg, run_dir=tmp_path / "run")
    front = {row["trial"] for row in result.front}
    assert front

    server = make_server("127.0.0.1", 0, dashboard.wsgi(result.storage), handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        (summary,) = _get(base, "/api/studies")["study_summaries"]
        detail = _get(base, f"/api/studies/{summary['study_id']}")
    finally:
        server.shutdown()

    assert detail["objective_names"] == metric_names(cfg)
    assert detail["objective_names"] == ["quality (ndcg_recpipe@64)", "log10(p95_latency_s)"]
    complete = [t for t in detail["trials"] if t["state"] == "Complete"]
    assert all(len(t["constraints"]) == 1 for t in complete)
    feasible = {t["number"] for t in complete if t["constraints"][0] <= 0}
    assert feasible and feasible != {t["number"] for t in complete}  # both kinds are there
    # the dashboard's Pareto front, told apart by the constraints it now sees: its feasible
    # trials are codesign's front
    best = {t["number"] for t in detail["best_trials"] if all(c <= 0 for c in t["constraints"])}
    assert best and best <= front
