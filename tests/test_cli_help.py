"""`modelpress … --help` teaches: every command and option has help, defaults are shown,
no RST markup, and `compress --help` lists the spec's fields with an example that the
spec loader accepts. The top-level --help runs as `python -m app.cli --help`, as a user
runs it; every command's --help is read from one fresh interpreter without settings
(``cli.main([..., "--help"])``, the function the entry point calls), not from a process
each: 33 interpreters cost 13 s of the suite."""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from app.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
MARKUP = ("``", ":func:", ":class:", ":meth:", ":mod:", ".. code")
HEAVY = {"torch", "transformers", "celery", "sqlalchemy", "fastapi", "uvicorn", "workers"}


def _env() -> dict[str, str]:
    # --help must work whatever MODELPRESS_* says, even with no settings at all.
    return {k: v for k, v in os.environ.items() if not k.startswith("MODELPRESS_")}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = [(path, parser)]
    for name, child in _subparsers(parser).items():
        found += _commands(child, (*path, name))
    return found


COMMANDS = _commands(build_parser())
IDS = [" ".join(path) or "modelpress" for path, _ in COMMANDS]


@dataclass(frozen=True)
class Help:
    returncode: int
    stdout: str
    stderr: str


# Run in a fresh interpreter: each command's --help through cli.main, as the entry
# point runs it, with stdout and stderr captured per command.
_EVERY_HELP = """
import contextlib, io, json, sys
from app import cli

out = []
for path in json.loads(sys.argv[1]):
    stdout, stderr, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            cli.main([*path, "--help"])
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
    out.append([path, code, stdout.getvalue(), stderr.getvalue()])
sys.__stdout__.write(json.dumps(out))
"""


@functools.cache
def _every_help() -> dict[tuple[str, ...], Help]:
    paths = [list(path) for path, _ in COMMANDS]
    r = subprocess.run(
        [sys.executable, "-c", _EVERY_HELP, json.dumps(paths)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return {tuple(path): Help(code, out, err) for path, code, out, err in json.loads(r.stdout)}


def _help(*path: str) -> Help:
    return _every_help()[path]


def _option_block(text: str, option: str) -> str:
    """The help an option gets in --help output: its line and the indented lines after."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(rf"\s+{re.escape(option)}\b", line):
            block = [line]
            for rest in lines[i + 1 :]:
                if not rest.strip() or rest.strip().startswith("-") or not rest.startswith(" "):
                    break
                block.append(rest)
            return "\n".join(block)
    raise AssertionError(f"{option} is not in the help:\n{text}")


def test_commands_are_found():
    names = {" ".join(path) for path, _ in COMMANDS}
    for expected in ("serve", "api", "worker", "migrate", "compress", "keys create"):
        assert expected in names
    for group in ("models", "datasets", "jobs", "artifacts"):
        assert any(n.startswith(group + " ") for n in names), group


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=IDS)
def test_every_option_and_subcommand_has_help(path, parser):
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                assert (choice.help or "").strip(), f"{' '.join(path)} {choice.dest}: no help"
            continue
        assert (action.help or "").strip(), f"{' '.join(path)} {action.dest}: no help"


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=IDS)
def test_help_runs_shows_defaults_and_has_no_markup(path, parser):
    r = _help(*path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    for markup in MARKUP:
        assert markup not in r.stdout, f"{markup!r} in {' '.join(path)} --help"
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        block = _option_block(r.stdout, action.option_strings[0])
        if action.default not in (None, False, argparse.SUPPRESS):
            assert f"(default: {action.default})" in " ".join(block.split()), block


def test_top_level_help_says_where_to_start():
    r = subprocess.run(
        [sys.executable, "-m", "app.cli", "--help"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr
    out = r.stdout
    assert out == _help().stdout  # the entry point prints what cli.main prints
    assert "modelpress serve" in out
    assert "modelpress keys create --tenant NAME" in out
    assert "modelpress compress spec.yaml --out run/" in out


def test_keys_create_help_explains_tenant_scope_and_name():
    out = _help("keys", "create").stdout
    flat = " ".join(out.split())
    assert "tenant's models, datasets, jobs and webhooks" in flat
    assert "read: GET only" in flat and "(default: write)" in flat
    assert "keys list" in _option_block(out, "--name")
    assert "last word of the line" in flat


def _example(out: str) -> str:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("example (spec.yaml"))
    block = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        block.append(line)
    return textwrap.dedent("\n".join(block))


def test_compress_help_lists_the_spec_fields_with_their_defaults():
    from app.jobs import schemas
    from workers.compress_cli import JOB_KEYS, LocalDataset, SpecFile

    out = _help("compress").stdout
    flat = " ".join(out.split())
    for key in SpecFile.model_fields:
        assert re.search(rf"^  {key}\s", out, re.M), f"spec key {key} not listed"
    assert set(JOB_KEYS) <= set(SpecFile.model_fields)
    for key in LocalDataset.model_fields:
        assert key in flat, f"dataset.{key} not listed"
    from app.jobspec import vocabulary

    for key in ("params_ratio", "sparsity", "speedup", "pattern", "unstructured", "2:4"):
        assert key in flat
    for key in (*schemas.Target.model_fields, *vocabulary.SPEEDUP_RUNTIMES):
        assert key in flat, f"target: {key} not listed"
    sections = [schemas.Distillation, schemas.Pruning, schemas.Training]
    sections += [schemas.Export] if "export" in SpecFile.model_fields else []
    for section in sections:
        for name, field in section.model_fields.items():
            default = field.get_default(call_default_factory=True)
            as_json = default is None or isinstance(default, bool | list)
            shown = json.dumps(default) if as_json else str(default)
            assert f"{name} ({shown}" in flat, f"{section.__name__}.{name} ({shown})"


def test_compress_help_example_is_a_valid_spec(tmp_path):
    from workers.compress_cli import SpecFile

    example = _example(_help("compress").stdout)
    spec = yaml.safe_load(example)
    assert spec["task"] == "sequence-classification"
    SpecFile.model_validate(spec)  # the loader `modelpress compress` uses
    assert "modelpress compress spec.yaml --out run/" in _help("compress").stdout


@pytest.mark.parametrize("path", [(), ("compress",), ("jobs", "create"), ("keys", "create")])
def test_help_imports_nothing_heavy(path):
    code = (
        "import json, sys\n"
        "from app import cli\n"
        "try:\n"
        f"    cli.main({[*path, '--help']!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    loaded = set(json.loads(r.stdout.splitlines()[-1]))
    assert not loaded & HEAVY, loaded & HEAVY
