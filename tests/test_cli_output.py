"""What a newcomer's commands print: `keys create` one line, `modelpress serve` a last
start-up line with the URL and the next step and no ERROR on Ctrl-C, `serve.sh` pip's
output in a file. Real processes in a fresh MODELPRESS_HOME (embedded mode)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _embedded_env(home: Path) -> dict[str, str]:
    # No MODELPRESS_* from the test session: embedded mode, as on a fresh clone.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPRESS_")}
    env.update(MODELPRESS_HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_keys_create_prints_exactly_the_key_line(tmp_path):
    env = _embedded_env(tmp_path / "home")
    r = subprocess.run(
        [sys.executable, "-m", "app.cli", "keys", "create", "--tenant", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr  # no alembic INFO lines: the migrations ran silently
    lines = r.stdout.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("created key_") and "tenant demo, scope write" in lines[0]
    assert lines[0].split()[-1].startswith("mp_")
    # The migrations did run (embedded mode): a second key finds the schema there.
    again = subprocess.run(
        [sys.executable, "-m", "app.cli", "keys", "list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and again.stderr == ""
    assert again.stdout.count("demo") == 1


@pytest.mark.e2e
def test_serve_says_where_and_what_next_and_ctrl_c_logs_no_error(tmp_path):
    home = tmp_path / "home"
    port = _free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=_embedded_env(home),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal's job
        )
    worker_pids: list[int] = []
    try:
        ready = f"modelpress is ready at http://127.0.0.1:{port}"
        deadline = time.monotonic() + 45
        while ready not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
        text = log.read_text(errors="replace")
        worker_pids = [int(p) for p in re.findall(r"worker pids (\d+), (\d+)", text)[0]]
        last = text.strip().splitlines()[-1]
        assert ready in last and "modelpress keys create --tenant NAME" in last, text
        assert "SecurityWarning" not in text and "superuser privileges" not in text
        assert "No hostname was supplied" not in text

        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        code = proc.wait(timeout=40)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in worker_pids:  # workers run in sessions of their own
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    text = log.read_text(errors="replace")
    assert code in (0, 130), text
    assert "Warm shutdown" in text  # the workers were stopped, not killed
    errors = [line for line in text.splitlines() if "ERROR" in line or "Traceback" in line]
    assert errors == [], text
    for pid in worker_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_serve_sh_keeps_pip_quiet_and_points_to_its_log(tmp_path):
    """pip fails at once here (a wheel path that does not exist: no download): its
    output is in the log file, the terminal shows one line per step, the end of the log
    and where the log is."""
    venv = tmp_path / "venv"
    env = {
        **_embedded_env(tmp_path / "home"),
        "MODELPRESS_VENV": str(venv),
        "MODELPRESS_TORCH_SPEC": str(tmp_path / "no-such-torch.whl"),
    }
    r = subprocess.run(
        ["bash", str(ROOT / "scripts" / "serve.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    log = venv / "pip-install.log"
    assert r.returncode != 0
    assert log.is_file() and "no-such-torch.whl" in log.read_text()
    assert f"pip failed installing {tmp_path / 'no-such-torch.whl'}; its whole log: {log}" in (
        r.stderr
    )
    assert "[venv]   pip install" in r.stderr
    assert r.stdout == ""
    assert not list(venv.glob(".modelpress-installed-*"))  # no stamp: the next run retries
