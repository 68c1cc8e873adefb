"""``modelpress models|datasets|jobs|artifacts``: the CLI as a subprocess, against the real
API over HTTP and a real Celery worker."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.apiclient import make_key
from tests.client.conftest import TINY_TRAINING
from tests.e2e.conftest import ROOT, wait_for

pytestmark = pytest.mark.e2e


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=timeout,
    )
    # Decoded by hand: text mode would turn the progress bar's \r into \n.
    r.stdout, r.stderr = r.stdout.decode(), r.stderr.decode()
    return r


def _env(url: str | None = None, key: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MODELPRESS_URL", "MODELPRESS_API_KEY")}
    env.update({k: v for k, v in (("MODELPRESS_URL", url), ("MODELPRESS_API_KEY", key)) if v})
    return env


@pytest.fixture(scope="module")
def env(server_url: str) -> dict[str, str]:
    return _env(server_url, make_key(f"t-{uuid.uuid4().hex[:8]}"))


@pytest.fixture(scope="module")
def mp(server_url: str, env: dict[str, str]):
    from modelpress_client import Client

    with Client(server_url, api_key=env["MODELPRESS_API_KEY"]) as c:
        yield c


def _spec(path: Path, teacher, dataset, **extra) -> Path:
    body = {
        "task": "sequence-classification",
        "teacher": teacher,
        "dataset": dataset,
        "target": {"params_ratio": 0.5},
        "training": TINY_TRAINING,
        **extra,
    }
    path.write_text(yaml.safe_dump(body))
    return path


def test_missing_url_or_key_is_a_clear_message(server_url):
    r = cli("jobs", "list", env=_env())
    assert r.returncode == 2 and r.stdout == ""
    assert "--url or MODELPRESS_URL" in r.stderr and "--api-key or MODELPRESS_API_KEY" in r.stderr
    r = cli("models", "list", "--url", server_url, env=_env())
    assert r.returncode == 2
    assert "MODELPRESS_API_KEY" in r.stderr and "MODELPRESS_URL" not in r.stderr
    r = cli("jobs", "get", "job_nope", "--url", server_url, "--api-key", "mp_wrong", env=_env())
    assert r.returncode == 1 and r.stderr.startswith("error: 401")


def test_upload_commands(env, tiny_teacher_dir, tiny_dataset, tmp_path):
    r = cli("models", "upload", str(tiny_teacher_dir), "--name", "tiny", env=env)
    assert r.returncode == 0, r.stderr
    model_id = r.stdout.split()[0]
    assert model_id.startswith("mdl_") and "BertModel" in r.stdout
    assert "uploading" in r.stderr and "100%" in r.stderr

    r = cli("datasets", "upload", str(tiny_dataset), "--name", "tiny", env=env)  # jsonl: suffix
    assert r.returncode == 0, r.stderr
    dataset_id = r.stdout.split()[0]
    assert dataset_id.startswith("ds_") and "200 rows" in r.stdout

    listed = json.loads(cli("models", "list", env=env).stdout)
    assert model_id in [m["id"] for m in listed]
    got = json.loads(cli("datasets", "get", dataset_id, env=env).stdout)
    assert got["id"] == dataset_id and got["num_rows"] == 200

    odd = tmp_path / "data.txt"
    shutil.copy(tiny_dataset, odd)
    r = cli("datasets", "upload", str(odd), env=env)
    assert r.returncode == 2 and "--format" in r.stderr
    r = cli("datasets", "upload", str(odd), "--format", "csv", env=env)
    assert r.returncode == 1 and "422" in r.stderr  # the service's own check, reported


def test_a_wrong_spec_file_uploads_nothing(server_url, tmp_path, tiny_dataset):
    env = _env(server_url, make_key(f"t-{uuid.uuid4().hex[:8]}"))
    spec = _spec(
        tmp_path / "job.yaml",
        "no-such-folder/",
        {"train": str(tiny_dataset), "eval": str(tiny_dataset)},
    )
    r = cli("jobs", "create", str(spec), env=env)
    assert r.returncode == 2
    assert "teacher: no file or folder" in r.stderr and "dataset.train/eval" in r.stderr
    assert json.loads(cli("models", "list", env=env).stdout) == []


def test_jobs_create_wait_succeeds(
    env, mp, celery_worker, tiny_teacher_dir, tiny_dataset, tmp_path
):
    # Local paths, relative to the spec file: uploaded first, then the job.
    shutil.copytree(tiny_teacher_dir, tmp_path / "teacher")
    shutil.copy(tiny_dataset, tmp_path / "reviews.jsonl")
    spec = _spec(tmp_path / "job.yaml", "teacher", {"path": "reviews.jsonl"}, name="cli")
    r = cli("jobs", "create", str(spec), "--wait", "--timeout", "300", env=env, timeout=360)
    assert r.returncode == 0, (r.stdout, r.stderr, celery_worker.text()[-3000:])
    lines = r.stdout.splitlines()
    job_id = lines[0].split()[0]
    assert lines == [f"{job_id}  queued", f"{job_id}  succeeded"]
    # Uploads, then the job: each one updating line (\r), ended by \n.
    bars = r.stderr.split("\n")
    assert bars.pop() == ""
    assert len(bars) == 3 and all(b.startswith("\r[") for b in bars), bars
    assert "teacher teacher" in bars[0] and "dataset reviews.jsonl" in bars[1]
    assert bars[2].split("\r")[-1].startswith("[" + "#" * 30 + "] 100%  succeeded")
    assert "running · distilling" in bars[2]  # the phase is shown as it goes

    job = json.loads(cli("jobs", "get", job_id, env=env).stdout)
    assert job["status"] == "succeeded" and job["name"] == "cli"
    assert job["request"]["teacher"]["model_id"].startswith("mdl_")
    listed = json.loads(cli("jobs", "list", "--status", "succeeded", env=env).stdout)
    assert [j["id"] for j in listed] == [job_id]
    events = [json.loads(x) for x in cli("jobs", "events", job_id, env=env).stdout.splitlines()]
    statuses = [e["data"]["status"] for e in events if e["type"] == "status"]
    assert statuses == ["queued", "running", "succeeded"]

    arts = {a["name"]: a for a in json.loads(cli("artifacts", "list", job_id, env=env).stdout)}
    r = cli(
        "artifacts", "download", job_id, "model", "-o", str(tmp_path / "student.tar.gz"), env=env
    )
    assert r.returncode == 0, r.stderr
    data = (tmp_path / "student.tar.gz").read_bytes()
    assert hashlib.sha256(data).hexdigest() == arts["model"]["sha256"]
    assert "sha256 checked" in r.stdout

    # By ids, with one Idempotency-Key twice: one job.
    ids_spec = _spec(
        tmp_path / "ids.yaml",
        {"model_id": job["request"]["teacher"]["model_id"]},
        {"dataset_id": job["request"]["dataset"]["dataset_id"]},
        training={**TINY_TRAINING, "epochs": 50},
    )
    first = cli("jobs", "create", str(ids_spec), "--idempotency-key", "k1", env=env)
    again = cli("jobs", "create", str(ids_spec), "--idempotency-key", "k1", env=env)
    assert first.returncode == again.returncode == 0, first.stderr
    assert first.stdout.split()[0] == again.stdout.split()[0]
    r = cli("jobs", "cancel", first.stdout.split()[0], env=env)
    assert r.returncode == 0 and r.stdout.split()[1] in ("cancelling", "cancelled")
    mp.wait(first.stdout.split()[0], timeout=60)
    r = cli("jobs", "delete", first.stdout.split()[0], env=env)
    assert r.returncode == 0 and r.stdout.startswith("deleted job_")
    r = cli("jobs", "get", first.stdout.split()[0], env=env)
    assert r.returncode == 1 and "404 job_not_found" in r.stderr

    followed = cli("jobs", "events", job_id, "--follow", env=env).stdout.splitlines()
    assert [json.loads(x) for x in followed] == events  # an ended job's stream: all, then end


def test_failed_job_exits_3_with_its_error_code(
    env, celery_worker, tiny_teacher_dir, tiny_dataset, tmp_path
):
    # config.json that does not describe the weights: only the worker can tell.
    folder = tmp_path / "broken"
    shutil.copytree(tiny_teacher_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] *= 3
    (folder / "config.json").write_text(json.dumps(config))
    spec = _spec(tmp_path / "job.yaml", str(folder), {"path": str(tiny_dataset)})
    r = cli("jobs", "create", str(spec), "--wait", "--timeout", "120", env=env, timeout=180)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "failed: teacher_config_mismatch:" in r.stderr
    job_id = r.stdout.split()[0]
    assert json.loads(cli("jobs", "get", job_id, env=env).stdout)["status"] == "failed"


def test_cancelled_job_exits_4(env, mp, celery_worker, tiny_teacher_tar, tiny_dataset, tmp_path):
    model = mp.upload_model(tiny_teacher_tar)
    dataset = mp.upload_dataset(tiny_dataset)
    long = {**TINY_TRAINING, "epochs": 100, "teacher_epochs": 100}
    spec = _spec(tmp_path / "job.yaml", model.id, {"dataset_id": dataset.id}, training=long)
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "jobs", "create", str(spec), "--wait"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        job_id = proc.stdout.readline().split()[0]
        wait_for(lambda: mp.get_job(job_id).status == "running", 60, "running")
        r = cli("jobs", "cancel", job_id, env=env)
        assert r.returncode == 0, r.stderr
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 4, (stdout, stderr)
    assert f"job {job_id} was cancelled" in stderr
    assert mp.get_job(job_id).status == "cancelled"


def test_remote_commands_load_no_engine_nor_server_stack(env):
    code = (
        "import json, sys\n"
        "from app import cli\n"
        "try:\n"
        "    cli.main(['jobs', 'get', 'job_nope'])\n"
        "except SystemExit as e:\n"
        "    print(e.code)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    status, modules = r.stdout.splitlines()
    assert status == "1" and "404 job_not_found" in r.stderr
    loaded = set(json.loads(modules))
    assert "modelpress_client" in loaded  # sanity: the command did run through the client
    assert not loaded & {"torch", "transformers", "workers", "celery", "sqlalchemy", "fastapi"}
