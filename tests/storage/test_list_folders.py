"""list_folders, which the reaper's sweep of jobs/ uses: one name per folder, from both
backends, under a store prefix too."""

from __future__ import annotations

from pathlib import Path

from app.storage import Storage
from tests.storage.test_storage import storage  # noqa: F401  (the fixture: both backends)


def test_folders_right_under_a_prefix(storage: Storage, tmp_path: Path):  # noqa: F811
    blob = tmp_path / "b"
    blob.write_bytes(b"x")
    for key in ("jobs/j1/1/model.tar.gz", "jobs/j1/checkpoints/a1.pt", "jobs/j2/1/r.json",
                "jobsx/j3/r.json", "models/m1/model.tar.gz", "jobs/loose.txt"):  # fmt: skip
        storage.put_file(key, blob)
    assert storage.list_folders("jobs/") == ["j1", "j2"]
    assert storage.list_folders("jobs") == ["j1", "j2"]
    assert storage.list_folders("jobs/j1/") == ["1", "checkpoints"]
    assert storage.list_folders("") == ["jobs", "jobsx", "models"]
    assert storage.list_folders("datasets/") == []
