"""Test set-up: a fresh PostgreSQL database (migrated), Redis and an S3 bucket per run.

The MODELPRESS_* variables are set before any app module is imported, because the
settings, engine and Celery app are built once per process, as in production.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services

pytest_plugins = ["tests.apiclient", "tests.apiserver"]

_HOME = Path(tempfile.mkdtemp(prefix="modelpress-test-home-"))
os.environ.update(
    MODELPRESS_HOME=str(_HOME),
    MODELPRESS_DATABASE_URL=services.database_url(),
    MODELPRESS_BROKER_URL=services.REDIS_URL,
    MODELPRESS_STORAGE_URL=f"s3://{services.BUCKET}",
    MODELPRESS_S3_ENDPOINT_URL=services.S3_ENDPOINT,
    MODELPRESS_S3_ACCESS_KEY_ID="test",
    MODELPRESS_S3_SECRET_ACCESS_KEY="test",
    MODELPRESS_GPU_WORKERS="false",
    # Workers time tiny models: one thread (a second one only adds contention on a
    # shared CI box) and 0.2 s a model and batch size instead of 2 s. The measurement
    # is the same code; its medians are noisier, which no test reads as a figure.
    MODELPRESS_LATENCY_THREADS="1",
    MODELPRESS_LATENCY_BUDGET_SECONDS="0.2",
    HF_HUB_OFFLINE="1",
    TRANSFORMERS_OFFLINE="1",
    TOKENIZERS_PARALLELISM="false",
)


# The tests whose assertions hang on timings (leases, kills, shutdown grace) run in two
# lanes, each an xdist group of whole modules run one test at a time; the two lanes run
# beside each other (each xdist process has its own database, bucket and Redis database:
# tests/services.py). Balanced on their durations on a quiet machine (README, "Tests"):
# lane 1 the chaos run (162 s), the PostgreSQL outages and the Ctrl-C tests (18-38 s
# each); lane 2 the kills (36-75 s each) and the Redis outage (95 s). A timed module not
# named here joins the lane with fewer tests.
TIMING_LANES = {
    "tests/faults/test_chaos.py": 1,
    "tests/faults/test_database_outage.py": 1,
    "tests/test_cli_output.py": 1,
    "tests/faults/test_worker_kills.py": 2,
    "tests/faults/test_broker_outage.py": 2,
}


def pytest_configure(config: pytest.Config) -> None:
    # xdist sorts its groups by their number of tests; the order given by
    # pytest_collection_modifyitems is kept instead (the timing lanes first).
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Groups for pytest-xdist's ``--dist loadgroup`` (scripts/test.sh runs two
    processes): a module stays whole, so its module-scoped runs are made once; the
    timed tests go to their lane (TIMING_LANES). Under xdist the lanes come first, as
    the longest groups (about 4 minutes each): started last, one of them would end the
    run minutes after everything else; then the other groups, the largest first."""
    lanes: dict[str, int] = {}
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        module = item.nodeid.split("::", 1)[0]
        if item.get_closest_marker("faults") or item.get_closest_marker("timing"):
            lane = TIMING_LANES.get(module) or min((1, 2), key=list(lanes.values()).count)
            lanes[item.nodeid] = lane
            group = f"timing-{lane}"
        else:
            group = module
        item.add_marker(pytest.mark.xdist_group(group))
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # one process: the collection order as it is

    def group(item: pytest.Item) -> str:
        return item.get_closest_marker("xdist_group").args[0]

    sizes: dict[str, int] = {}
    for item in items:
        sizes[group(item)] = sizes.get(group(item), 0) + 1

    def rank(item: pytest.Item) -> tuple:
        name = group(item)
        return (0, name) if name.startswith("timing-") else (1, -sizes[name], name)

    items.sort(key=rank)  # stable: within a group, the collection order


@pytest.fixture(scope="session")
def database() -> Iterator[str]:
    import sqlalchemy as sa

    from app.migrate import upgrade

    services.require(services.POSTGRES_URL, "PostgreSQL")
    admin = sa.create_engine(services.POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{services.DB_NAME}"'))
    url = services.database_url()
    upgrade(url)  # the schema comes from the migrations, as in production
    yield url
    from app.db import get_engine

    get_engine().dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{services.DB_NAME}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def bucket() -> Iterator[str]:
    services.require(services.S3_ENDPOINT, "The S3 server (SeaweedFS)")
    from app.storage import get_storage

    get_storage().ensure()
    yield services.BUCKET
    storage = get_storage()
    storage.delete_prefix("")
    storage.client.delete_bucket(Bucket=services.BUCKET)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def broker() -> str:
    services.require(services.REDIS_URL, "Redis")
    return services.REDIS_URL


@pytest.fixture(scope="session")
def stack(database: str, bucket: str, broker: str) -> dict[str, str]:
    """Every real dependency, ready."""
    return {"database": database, "bucket": bucket, "broker": broker}


def pack_tar(folder: Path, dest: Path, *, prefix: str = "") -> Path:
    with tarfile.open(dest, "w:gz") as tf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tf.add(path, arcname=prefix + path.relative_to(folder).as_posix())
    return dest


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), num_labels=None)


@pytest.fixture(scope="session")
def tiny_teacher_tar(tiny_teacher_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_tar(tiny_teacher_dir, tmp_path_factory.mktemp("archives") / "tiny.tar.gz")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny import make_tiny_dataset

    return make_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny.jsonl", n=200)
