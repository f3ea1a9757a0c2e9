"""The README's `optuna-dashboard runs/STUDY/study.journal`: the dashboard opens a search's journal file by its
path and serves its study and trials."""

from __future__ import annotations

import io
import json
from wsgiref.util import setup_testing_defaults

import optuna
import pytest

from nas.search.config import SearchConfig
from nas.search.run import run_search
from tests.search.test_search import fake_evaluate

dashboard_storage = pytest.importorskip("optuna_dashboard._storage_url")
optuna_dashboard = pytest.importorskip("optuna_dashboard")


def get(app, path: str) -> dict:
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    status = []
    errors = io.StringIO()
    environ["wsgi.errors"] = errors
    body = b"".join(app(environ, lambda code, headers, exc_info=None: status.append(code)))
    assert status[0].startswith("200"), (status, errors.getvalue()[-2000:])
    return json.loads(body)


def test_the_dashboard_reads_a_search_journal_by_its_path(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run_search(SearchConfig(strategy="standalone", space="tiny", target_flops=60_000_000, population=4, n_trials=3,
                            study="watched", runs_dir=str(tmp_path)), evaluate=fake_evaluate)
    storage = dashboard_storage.get_storage(str(tmp_path / "watched" / "study.journal"))  # what the CLI does
    app = optuna_dashboard.wsgi(storage)
    studies = get(app, "/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == ["watched"]
    detail = get(app, f"/api/studies/{studies[0]['study_id']}")
    assert len(detail["trials"]) == 3 and detail["directions"] == ["maximize", "minimize"]
