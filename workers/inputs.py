"""Fetch a job's inputs from object storage into a work folder and build the engine spec."""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from app.datasets.service import split_key
from app.datasets.tables import Dataset
from app.jobs.tables import Job
from app.models.archive import ArchiveLimits, check_archive
from app.models.service import archive_limits
from app.models.tables import Model
from app.settings import Settings
from app.storage import Storage
from app.sweeps.state import ChildPlace
from workers.engine.spec import CompressionSpec
from workers.request_spec import engine_sections


def extract_archive(archive: Path, dest: Path, limits: ArchiveLimits) -> Path:
    """Extract safely and return the folder that holds config.json."""
    # The API checked this archive at upload; checked again because the caps may have
    # changed since, and a worker trusts nothing it did not check itself.
    check_archive(archive, limits)
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                p = PurePosixPath(info.filename)
                if p.is_absolute() or ".." in p.parts:
                    raise ValueError(f"unsafe archive member {info.filename!r}")
            zf.extractall(dest)
    else:
        with tarfile.open(archive, "r:gz") as tf:
            # The "data" filter refuses absolute paths, "..", links out of the tree and
            # device files.
            tf.extractall(dest, filter="data")
    configs = sorted(dest.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise ValueError("the model archive has no config.json")
    return configs[0].parent


def build_spec(
    *,
    job: Job,
    teacher: Model,
    dataset: Dataset,
    storage: Storage,
    settings: Settings,
    workdir: Path,
) -> CompressionSpec:
    req = job.request
    archive = workdir / f"teacher.{teacher.archive_format}"
    storage.download_file(teacher.storage_key, archive)
    teacher_dir = extract_archive(archive, workdir / "teacher", archive_limits(settings))
    archive.unlink()

    data_dir = workdir / "data"
    data_dir.mkdir()
    files = {}
    for role, split in (
        ("train", req["dataset"]["train_split"]),
        ("eval", req["dataset"]["eval_split"]),
    ):
        path = data_dir / f"{role}.jsonl"
        storage.download_file(split_key(dataset.id, split), path)
        files[role] = path

    output_dir = workdir / "output"
    output_dir.mkdir()
    engine_work = workdir / "engine"
    engine_work.mkdir()
    return CompressionSpec(
        teacher_dir=teacher_dir,
        train_file=files["train"],
        eval_file=files["eval"],
        label_names=tuple(dataset.label_names),
        output_dir=output_dir,
        work_dir=engine_work,
        **engine_sections(req),
        device="cuda" if job.queue == "gpu" else "cpu",
        latency_threads=settings.latency_threads,
        latency_budget_s=settings.latency_budget_seconds,
        host_lock=settings.host_lock,
        # A sweep's repeat trains the shape its candidate's first training had.
        speed_plan=getattr(ChildPlace.of(job.sweep), "speed_plan", None),
    )


def _as_published(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Ordinary permissions (files 0644, folders 0755) and no owner: what the worker's
    umask or a library's temporary file gave (safetensors writes 0600) is not what the
    user who unpacks the archive should get, nor is the worker's user name."""
    info.mode = 0o755 if info.isdir() else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack_folder(folder: Path, dest: Path) -> Path:
    """A folder as .tar.gz with its files at the top, so it unpacks into any folder."""
    with tarfile.open(dest, "w:gz") as tf:
        for path in sorted(folder.rglob("*")):
            if path.is_file() or path.is_dir():
                arcname = path.relative_to(folder).as_posix()
                tf.add(path, arcname=arcname, recursive=False, filter=_as_published)
    return dest


def cleanup(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
