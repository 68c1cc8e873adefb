"""Folders packed for download unpack as a user expects: ordinary permissions, no owner."""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

from workers.inputs import pack_folder


def unpacked_modes(archive: Path, dest: Path) -> dict[str, int]:
    """Extract as a careful user would (the "data" filter) and read back each mode."""
    with tarfile.open(archive, "r:gz") as tf:
        tf.extractall(dest, filter="data")
    return {p.relative_to(dest).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in dest.rglob("*")}


def test_files_unpack_0644_and_folders_0755_whatever_they_were(tmp_path: Path):
    folder = tmp_path / "model"
    (folder / "sub" / "deeper").mkdir(parents=True)
    weights = folder / "model.safetensors"
    weights.write_bytes(b"\0" * 64)
    weights.chmod(0o600)  # as safetensors writes it
    (folder / "sub" / "deeper" / "vocab.txt").write_text("[PAD]\n")
    (folder / "sub" / "deeper" / "vocab.txt").chmod(0o640)
    (folder / "sub").chmod(0o700)
    old = os.umask(0o022)  # what the user has; the archive must not need another
    try:
        modes = unpacked_modes(pack_folder(folder, tmp_path / "m.tar.gz"), tmp_path / "out")
    finally:
        os.umask(old)
    assert modes == {
        "model.safetensors": 0o644,
        "sub": 0o755,
        "sub/deeper": 0o755,
        "sub/deeper/vocab.txt": 0o644,
    }
    with tarfile.open(tmp_path / "m.tar.gz") as tf:
        members = tf.getmembers()
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
    assert members[0].name == "model.safetensors"  # files at the top
