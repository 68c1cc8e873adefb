"""Read what we need from a packed ``save_pretrained`` folder without extracting it.

The API never imports torch or transformers: ``config.json`` is read as JSON and the
parameter count comes from the safetensors headers (8-byte length + JSON header).
"""

from __future__ import annotations

import json
import math
import posixpath
import struct
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from app.errors import ProblemError
from app.jobspec.vocabulary import HEAD_ARCHITECTURE_SUFFIX

HEAD_PREFIXES = ("classifier.", "score.", "qa_outputs.")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer.model", "vocab.json", "spiece.model")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class ModelInfo:
    archive_format: str
    config: dict[str, Any]
    architecture: str | None
    model_type: str | None
    num_parameters: int
    has_task_head: bool
    num_labels: int | None


def head_task(architecture: str | None, *, has_task_head: bool) -> str | None:
    """The task the weights' head was made for ("sequence-classification",
    "token-classification"), "other" for a head of another kind or an unnamed
    architecture, None without a head."""
    if not has_task_head:
        return None
    for task, suffix in HEAD_ARCHITECTURE_SUFFIX.items():
        if architecture and architecture.endswith(suffix):
            return task
    return "other"


def _invalid(detail: str, code: str = "model_invalid") -> ProblemError:
    return ProblemError(422, code, detail, param="file")


def detect_format(path: Path) -> str:
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        return "tar.gz"
    if magic == b"PK\x03\x04":
        return "zip"
    raise _invalid(
        "The file is neither a .tar.gz nor a .zip archive; pack the save_pretrained folder "
        "with `tar czf model.tar.gz -C DIR .` or `zip -r model.zip DIR`.",
        code="archive_invalid",
    )


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int
    max_bytes: int


def _check_size(count: int, total: int, limits: ArchiveLimits) -> None:
    if count > limits.max_members:
        raise ProblemError(
            413,
            "archive_too_many_members",
            f"The archive has more than {limits.max_members} members "
            "(MODELPRESS_MAX_ARCHIVE_MEMBERS).",
            param="file",
        )
    if total > limits.max_bytes:
        raise ProblemError(
            413,
            "archive_too_large",
            f"The archive unpacks to more than {limits.max_bytes} bytes "
            "(MODELPRESS_MAX_ARCHIVE_BYTES).",
            param="file",
        )


def _tar_members(tf: tarfile.TarFile, limits: ArchiveLimits) -> list[tarfile.TarInfo]:
    """Members one at a time, so a bomb is stopped at the cap, not after unpacking it all."""
    members: list[tarfile.TarInfo] = []
    total = 0
    while (m := tf.next()) is not None:
        members.append(m)
        total += m.size
        _check_size(len(members), total, limits)
        _check_names([m.name])
        if m.issym() or m.islnk() or m.isdev() or m.isfifo():
            raise _invalid(
                f"The archive member {m.name!r} is a link or device; pack regular files only.",
                code="archive_unsafe",
            )
    return members


def check_archive(path: Path, limits: ArchiveLimits) -> str:
    """Refuse unsafe or oversized archives before anything is extracted; returns the format."""
    fmt = detect_format(path)
    with _members(path, fmt, limits):
        pass
    return fmt


@contextmanager
def _members(
    path: Path, fmt: str, limits: ArchiveLimits
) -> Iterator[tuple[list[str], Callable[[str], IO[bytes]]]]:
    """The archive's regular-file names and a function opening one of them."""
    try:
        if fmt == "zip":
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()
                # zipfile never reads past a member's declared file_size, so these sums
                # bound what extraction can write.
                _check_size(len(infos), sum(i.file_size for i in infos), limits)
                names = [i.filename for i in infos if not i.is_dir()]
                _check_names(names)
                yield names, zf.open
        else:
            with tarfile.open(path, "r:gz") as tf:
                members = _tar_members(tf, limits)
                files = {m.name: m for m in members if m.isfile()}

                def open_member(name: str) -> IO[bytes]:
                    f = tf.extractfile(files[name])
                    assert f is not None
                    return f

                yield list(files), open_member
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise _invalid(
            f"The archive could not be read ({type(e).__name__}); is it complete?",
            code="archive_invalid",
        ) from e


def _check_names(names: list[str]) -> None:
    for name in names:
        norm = posixpath.normpath(name)
        if name.startswith("/") or norm == ".." or norm.startswith("../") or "\\" in name:
            raise _invalid(
                f"The archive member {name!r} points outside the archive.", code="archive_unsafe"
            )


def _root_of(names: list[str]) -> str:
    configs = sorted(
        (n for n in names if posixpath.basename(n) == "config.json"),
        key=lambda n: (n.count("/"), n),
    )
    configs = [c for c in configs if posixpath.normpath(c).count("/") <= 1]
    if not configs:
        raise _invalid(
            "The archive has no config.json at its top level (or in one top folder); "
            "upload the folder written by model.save_pretrained(DIR).",
            code="model_config_missing",
        )
    root = posixpath.dirname(posixpath.normpath(configs[0]))
    return root


def _safetensors_header(f: IO[bytes], name: str) -> dict[str, Any]:
    raw = f.read(8)
    if len(raw) != 8:
        raise _invalid(f"{name} is not a safetensors file (too short).")
    (n,) = struct.unpack("<Q", raw)
    if n > MAX_HEADER_BYTES:
        raise _invalid(f"{name} has an implausible safetensors header ({n} bytes).")
    try:
        header = json.loads(f.read(n))
    except (ValueError, UnicodeDecodeError) as e:
        raise _invalid(f"{name} is not a valid safetensors file (bad header).") from e
    if not isinstance(header, dict):
        raise _invalid(f"{name} is not a valid safetensors file (bad header).")
    return header


def inspect_archive(path: Path, limits: ArchiveLimits) -> ModelInfo:
    fmt = detect_format(path)
    with _members(path, fmt, limits) as (names, open_member):
        root = _root_of(names)
        prefix = f"{root}/" if root else ""
        in_root = {n[len(prefix) :]: n for n in names if n.startswith(prefix) and n != prefix}
        top = {k: v for k, v in in_root.items() if "/" not in posixpath.normpath(k)}
        top = {posixpath.normpath(k): v for k, v in top.items()}

        pickles = sorted(k for k in top if k.endswith(PICKLE_SUFFIXES))
        weights = sorted(k for k in top if k.endswith(".safetensors"))
        if not weights:
            hint = (
                f" It holds {pickles[0]}, a pickle file, which we do not load." if pickles else ""
            )
            raise _invalid(
                "The archive has no .safetensors weights." + hint + " Save the model with "
                "model.save_pretrained(DIR, safe_serialization=True).",
                code="model_weights_missing",
            )
        if not any(t in top for t in TOKENIZER_FILES):
            raise _invalid(
                "The archive has no tokenizer (tokenizer.json or vocab.txt); save it into the "
                "same folder with tokenizer.save_pretrained(DIR).",
                code="model_tokenizer_missing",
            )
        try:
            with open_member(top["config.json"]) as f:
                config = json.loads(f.read(10 * 1024 * 1024))
        except (ValueError, UnicodeDecodeError) as e:
            raise _invalid("config.json is not valid JSON.", code="model_config_invalid") from e
        if not isinstance(config, dict):
            raise _invalid("config.json must hold a JSON object.", code="model_config_invalid")
        if config.get("auto_map") or any(k.endswith(".py") for k in top):
            # Custom modelling code would run only with trust_remote_code, which we never set.
            raise _invalid(
                "The model needs custom code (config.json has auto_map, or the archive holds "
                ".py files); only architectures built into transformers are accepted.",
                code="model_custom_code",
            )

        num_parameters = 0
        head_rows: int | None = None
        has_head = False
        for w in weights:
            with open_member(top[w]) as f:
                header = _safetensors_header(f, w)
            for tensor, meta in header.items():
                if tensor == "__metadata__" or not isinstance(meta, dict):
                    continue
                shape = meta.get("shape") or []
                num_parameters += math.prod(int(d) for d in shape)
                if tensor.startswith(HEAD_PREFIXES):
                    has_head = True
                    # the last layer of the head has one row per label
                    if tensor.endswith("weight") and len(shape) == 2:
                        head_rows = int(shape[0])

    architectures = config.get("architectures") or []
    return ModelInfo(
        archive_format=fmt,
        config=config,
        architecture=architectures[0] if architectures else None,
        model_type=config.get("model_type"),
        num_parameters=num_parameters,
        has_task_head=has_head,
        num_labels=head_rows if has_head else None,
    )
