"""The API's broker app: the visibility timeout stays above the longest a job may run,
so Redis never delivers a running job's message a second time; and the worker's app is
the same configuration, with task code registered under the names the API sends."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from app.broker import broker_options, make_celery
from app.jobs.schemas import JobCreate
from app.queues import DELIVER_WEBHOOK_TASK, RUN_JOB_TASK
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _longest_max_runtime_s() -> int:
    # What the API accepts, read from the request schema itself.
    field = JobCreate.model_json_schema()["properties"]["max_runtime_s"]
    return max(option.get("maximum", 0) for option in field["anyOf"])


def _timeout(**settings) -> int:
    url, options = broker_options(Settings(broker_url="redis://127.0.0.1:6379/13", **settings))
    assert url.startswith("redis://")
    return options["visibility_timeout"]


def test_above_the_longest_runtime_a_request_may_ask_for():
    defaults = Settings(broker_url="redis://127.0.0.1:6379/13")
    timeout = _timeout()
    assert timeout > _longest_max_runtime_s() >= 7 * 24 * 3600
    assert timeout > defaults.job_max_runtime_seconds


def test_follows_an_operators_longer_default_runtime():
    month = 30 * 24 * 3600
    assert _timeout(job_max_runtime_seconds=month) > month


def test_the_filesystem_broker_has_no_visibility_timeout(tmp_path):
    _, options = broker_options(Settings(broker_url=f"filesystem://{tmp_path}/broker"))
    assert "visibility_timeout" not in options


def test_the_worker_registers_its_tasks_under_the_names_the_api_sends():
    # In a fresh process: the worker's task modules register on import.
    code = (
        "import json, workers.tasks, workers.webhook_delivery\n"
        "from workers.celery_app import celery_app\n"
        "print(json.dumps(sorted(celery_app.tasks)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    registered = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert {RUN_JOB_TASK, DELIVER_WEBHOOK_TASK} <= registered


def test_the_api_and_the_worker_share_one_configuration():
    settings = Settings(broker_url="redis://127.0.0.1:6379/13")
    api, worker = make_celery(settings), make_celery(settings, include=["workers.tasks"])
    different = {
        key
        for key in ("broker_url", "broker_transport_options", "task_queues", "task_serializer")
        if api.conf[key] != worker.conf[key]
    }
    assert not different
    assert api.conf.include == [] and worker.conf.include == ["workers.tasks"]
