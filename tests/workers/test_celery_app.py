"""The broker's visibility timeout stays above the longest a job may run, so Redis never
delivers a running job's message a second time."""

from __future__ import annotations

from app.jobs.schemas import JobCreate
from app.settings import Settings
from workers.celery_app import broker_options


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
