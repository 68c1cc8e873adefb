"""What a newcomer's commands print: `keys create` one line, `serve.sh` pip's output
in a file (`modelpress serve`'s start-up line and Ctrl-C: test_cli_serve_stop.py). Real
processes in a fresh MODELPRESS_HOME (embedded mode)."""

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


def _serve(home: Path, port: int, log: Path, **settings: str) -> subprocess.Popen:
    """`modelpress serve` in its own process group (as a terminal's job), its output
    appended to ``log``; returns once it has said it is ready."""
    env = {**_embedded_env(home), **{f"MODELPRESS_{k.upper()}": v for k, v in settings.items()}}
    start = len(log.read_text(errors="replace")) if log.exists() else 0
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while f"modelpress is ready at http://127.0.0.1:{port}" not in log.read_text()[start:]:
        if proc.poll() is not None or time.monotonic() > deadline:
            _kill(proc, log.read_text(errors="replace"))
            raise AssertionError(log.read_text(errors="replace"))
        time.sleep(0.2)
    return proc


def _kill(proc: subprocess.Popen, text: str) -> None:
    """The serve process and its workers (which run in sessions of their own), if any
    is left: for a test that failed half-way."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for pids in re.findall(r"worker pids (\d+), (\d+)", text):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pid), signal.SIGKILL)


def _errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if "ERROR" in line or "Traceback" in line]


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
