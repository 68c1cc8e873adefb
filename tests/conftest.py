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
    # One torch (OpenMP) thread in every test process and every worker it starts: the
    # xdist processes and their workers share two cores, and two-thread OpenMP pools
    # oversubscribed there spin-wait on each other (a kill test ran 17 s alone, 84 s
    # beside the other lane). Tests train tiny models; no test reads a thread count but
    # those set explicitly (latency, data-parallel).
    OMP_NUM_THREADS="1",
    MKL_NUM_THREADS="1",
)


# The tests whose assertions hang on timings (leases, kills, shutdown grace: marked
# faults or timing) run in two lanes, each a group of whole modules run one test at a
# time; the two lanes run beside each other (each xdist process has its own database,
# bucket and Redis database: tests/services.py). Balanced on their durations on a quiet
# machine (README, "Tests"): lane 1 the chaos run (162 s), the PostgreSQL outages and the
# Ctrl-C tests (18-38 s each); lane 2 the kills (36-75 s each) and the Redis outage
# (95 s). A module here holds timed tests only, and a timed test is in a module here.
TIMING_LANES = {
    "tests/faults/test_chaos.py": 1,
    "tests/faults/test_database_outage.py": 1,
    "tests/test_cli_serve_stop.py": 1,
    "tests/faults/test_sweep_workers.py": 1,
    "tests/faults/test_worker_kills.py": 2,
    "tests/faults/test_broker_outage.py": 2,
}


def schedule_group(nodeid: str) -> str:
    """The unit of scheduling: a timing lane, or else the test's module (kept whole,
    so its module-scoped fixtures are made once)."""
    module = nodeid.split("::", 1)[0]
    lane = TIMING_LANES.get(module)
    return f"timing-{lane}" if lane else module


def pytest_configure(config: pytest.Config) -> None:
    # xdist sorts its groups by their number of tests; the order given by
    # pytest_collection_modifyitems is kept instead (the timing lanes first).
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


@pytest.hookimpl(optionalhook=True)  # known only where xdist is loaded
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadgroup`` (scripts/test.sh) with the groups of schedule_group(). xdist's own
    loadgroup reads xdist_group marks through a node id it renames, which pytest 9 no
    longer reads: every test was a group of its own, modules and the timing tests were
    spread over both processes."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Groups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return schedule_group(nodeid)

    return Groups(config, log)


def _package(group: str) -> str:
    return group.rpartition("/")[0]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under xdist the timing lanes come first, as the longest groups (about 4 minutes
    each): started last, one of them would end the run minutes after everything else;
    then the other groups, package by package (the largest first), and within a
    package the largest module first. A package's modules stay together so that its
    package-scoped fixtures are made once per process: the real worker of tests/e2e
    (6-11 s to start, 3 s to stop) was started again for each of its modules when
    modules of other packages came between them."""
    for item in items:
        timed = bool(item.get_closest_marker("faults") or item.get_closest_marker("timing"))
        if timed != schedule_group(item.nodeid).startswith("timing-"):
            raise pytest.UsageError(
                f"{item.nodeid}: a test marked faults or timing belongs in a module of "
                "TIMING_LANES (tests/conftest.py), which holds such tests only"
            )
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # one process: the collection order as it is
    sizes: dict[str, int] = {}
    packages: dict[str, int] = {}
    for item in items:
        group = schedule_group(item.nodeid)
        sizes[group] = sizes.get(group, 0) + 1
        packages[_package(group)] = packages.get(_package(group), 0) + 1

    def rank(item: pytest.Item) -> tuple:
        name = schedule_group(item.nodeid)
        if name.startswith("timing-"):
            return (0, name)
        package = _package(name)
        return (1, -packages[package], package, -sizes[name], name)

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
