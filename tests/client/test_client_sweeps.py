"""A sweep through the client and the remote CLI's summary of it (no worker: the
sweep's first round is started here as its worker would start it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.apiclient import job_body


@pytest.fixture
def ids(mp, tiny_teacher_tar: Path, tiny_dataset: Path) -> tuple[str, str]:
    return mp.upload_model(tiny_teacher_tar).id, mp.upload_dataset(tiny_dataset).id


def test_a_sweeps_candidates_are_listed_under_it_only(mp, ids):
    from app.db import session_scope
    from app.jobs import service as jobs
    from app.sweeps import service as sweeps
    from app.sweeps.state import SweepPlan

    sweep = mp.create_job(job_body(*ids, target={"min_retention": 0.98}))
    assert sweep.parent_id is None
    with session_scope() as s:
        attempt = jobs.claim(session=s, job_id=sweep.id, worker="w", lease_seconds=60)
    plan = SweepPlan("min_retention", 0.98, "pytorch", 1, 1.3, 4.0, 2, 4, None)
    with session_scope() as s:
        started = sweeps.begin(session=s, parent_id=sweep.id, attempt=attempt, plan=plan)
    kids = list(mp.iter_jobs(parent_id=sweep.id, page_size=1))
    assert sorted(k.id for k in kids) == sorted(i for i, _ in started.to_send)
    assert all(k.parent_id == sweep.id for k in kids)
    assert [j.id for j in mp.iter_jobs()] == [sweep.id]
    assert mp.cancel_job(sweep.id).status == "cancelling"
    assert {mp.get_job(k.id).status for k in kids} == {"cancelled"}


def test_the_remote_cli_prints_a_sweeps_candidates_and_answer():
    from app.sweeps.report import sweep_table

    row = {"speedup": 2.1, "retention": 0.991, "latency_ms": 9.52, "job_id": "job_b"}
    sweep = {
        "candidates": [
            {"index": 0, "speedup_target": 1.3, **row, "pareto": True, "picked": False},
            {"index": 1, "speedup_target": 2.0, **row, "pareto": True, "picked": True},
            {"index": 2, "speedup_target": 3.1, "speedup": None, "retention": None,
             "latency_ms": None, "job_id": "job_c", "pareto": False, "picked": False},
        ],
        "message": "The fastest of 3 candidates that keeps at least 0.99: candidate 1.",
    }  # fmt: skip
    lines = sweep_table(sweep).splitlines()
    assert lines[1].startswith("+0 ") and lines[2].startswith("*1 ")
    assert "2.10x" in lines[2] and "99.10%" in lines[2] and "9.52" in lines[2]
    assert lines[3].split()[:3] == ["2", "3.1x", "-x"]
    assert lines[-1] == sweep["message"]
