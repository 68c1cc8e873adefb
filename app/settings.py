"""One settings object, read by the API, the CLI and the Celery workers.

Everything comes from ``MODELPRESS_*`` environment variables (or a ``.env`` file).
With nothing set, modelpress runs embedded: SQLite, a filesystem broker and local
artifact files under ``MODELPRESS_HOME`` — the same code paths as production, other URLs.
"""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MODELPRESS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    home: Path = Field(Path(".modelpress"), description="Folder for embedded-mode data.")
    database_url: str = Field("", description="SQLAlchemy URL; empty → SQLite under HOME.")
    # PostgreSQL connections a process keeps open between requests. A request that finds
    # none idle opens one (a server process forked: milliseconds), and a connection past
    # this many is closed when it is returned: too small a pool opens a connection for a
    # fifth of the requests under load (bench/README.md, api_load.py). Up to as many
    # again are opened at a peak (the 40 worker threads that run sync routes).
    database_pool_size: int = Field(20, ge=1, le=1000)
    broker_url: str = Field("", description="Celery broker URL; empty → filesystem under HOME.")
    storage_url: str = Field(
        "", description="file:///abs/path or s3://bucket[/prefix]; empty → HOME/artifacts."
    )
    s3_endpoint_url: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    # Pre-signed download URLs are signed for this endpoint (one that clients outside the
    # service's network reach); empty → s3_endpoint_url.
    s3_public_endpoint_url: str | None = None
    # Buckets a teacher or dataset may be read from by s3:// uri besides the service's
    # own: "bucket" or "bucket/prefix/". Read with the input_s3_* settings; without keys
    # for another endpoint, boto3's default chain (instance or pod role) signs.
    input_buckets: list[str] = []
    input_s3_endpoint_url: str | None = Field(None, description="empty → s3_endpoint_url")
    input_s3_access_key_id: str | None = None
    input_s3_secret_access_key: SecretStr | None = None
    input_s3_region: str | None = Field(None, description="empty → s3_region")
    # Whether some worker consumes the "gpu" queue. Jobs are routed there only if so.
    gpu_workers: bool = False
    worker_concurrency: int = Field(1, ge=1)
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    public_url: str = Field("", description="Base URL for links in responses; empty → request URL.")
    max_upload_bytes: int = Field(2 * 1024**3, gt=0)
    # How long an upload may go without a byte before it is refused with 408.
    body_read_timeout_seconds: float = Field(60.0, gt=0)
    # A body refused before it is read (413 over max_upload_bytes, 401, 403) is then read
    # and dropped, up to this many bytes and seconds, so that clients that send it all
    # before reading get the answer rather than a connection reset (app/linger.py); past
    # these, a reset.
    max_drain_bytes: int = Field(128 * 1024**2, ge=0)
    drain_seconds: float = Field(30.0, ge=0)
    # Lifetime of pre-signed download URLs (GET …/artifacts/{name}?redirect=true).
    presign_seconds: int = Field(300, ge=10, le=3600)
    # Caps on what a model archive may unpack to (a zip bomb stops here).
    max_archive_members: int = Field(10_000, gt=0)
    max_archive_bytes: int = Field(20 * 1024**3, gt=0)
    # URLs that users give (a teacher by URI, later webhooks): only these schemes and
    # hosts ("example.com" or "*.example.com"), and never private, loopback or link-local
    # addresses unless allowed.
    url_allowed_schemes: list[str] = ["https"]
    # "*" is any host; the address check below still applies.
    url_allowed_hosts: list[str] = ["*"]
    url_allow_private: bool = False
    # Webhook deliveries: a timeout per attempt (a slow receiver cannot hold a delivery
    # worker), attempts per delivery with exponential backoff and full jitter between
    # them, and failed attempts in a row after which a webhook is disabled.
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=60)
    webhook_max_attempts: int = Field(8, ge=1, le=30)
    webhook_backoff_seconds: int = Field(30, ge=0)
    webhook_backoff_max_seconds: int = Field(3600, ge=0)
    webhook_disable_after_failures: int = Field(20, ge=1)
    webhook_concurrency: int = Field(4, ge=1, le=64)
    # Job leases: a running job's worker renews its lease every lease_seconds / 3; a lease
    # that runs out means the worker is gone, and the reaper (in every worker, every
    # reaper_interval_seconds) queues the job again, up to max_attempts claims in all.
    lease_seconds: int = Field(60, ge=2)
    reaper_interval_seconds: float = Field(15.0, gt=0)
    max_attempts: int = Field(3, ge=1)
    # `serve` on Ctrl-C: how long a worker busy with a job may take to finish it (warm
    # shutdown) before the job is stopped and left to resume from its last checkpoint.
    shutdown_grace_seconds: float = Field(10.0, ge=0)
    # A queued job that no worker claimed for this long is handed to the broker again
    # (a message lost with a broker restart, or never sent while it was down), once its
    # queue there is empty (app/jobs/service.py reap).
    requeue_after_seconds: int = Field(120, ge=1)
    # A sweep (target.min_retention or max_latency_ms) runs this many candidates at once,
    # each a job of its own: set it to the worker processes that serve the sweep's queue
    # (one more only waits in the queue; one fewer leaves a worker idle each round).
    sweep_parallel: int = Field(2, ge=1, le=16)
    # Default of a job's max_runtime_s: past it the job fails with max_runtime_exceeded.
    job_max_runtime_seconds: int = Field(24 * 3600, ge=1)
    # Per-tenant quotas.
    tenant_max_active_jobs: int = Field(20, ge=1, description="queued + running jobs")
    tenant_max_stored_bytes: int = Field(
        200 * 1024**3, gt=0, description="models + datasets + job artifacts + cached teachers"
    )
    # Lifecycle: artifacts of jobs finished longer ago than this are deleted by the
    # reaper (0: kept until the job is deleted); Idempotency-Key values match for this long.
    artifact_retention_days: float = Field(0.0, ge=0)
    idempotency_key_ttl_hours: float = Field(24.0, gt=0)
    # A sweep's candidates (child jobs) keep their own artifacts this long after they
    # end (0: as long as any job's); the one the sweep picked is also the sweep's own
    # model artifact. Three days: time to compare or take a runner-up, without a sweep
    # of six candidates holding six students for good.
    sweep_candidate_retention_hours: float = Field(72.0, ge=0)
    # An API process accepts a key it has looked up for this many seconds without asking
    # the database again (app/auth/key_cache.py): a key revoked by `modelpress keys
    # revoke` may still be accepted that long. 0: every request looks its key up.
    api_key_cache_seconds: float = Field(5.0, ge=0, le=300)
    # Latency is measured with a fixed thread count so numbers are comparable.
    latency_threads: int = Field(2, ge=1)
    # Seconds spent timing each model at each batch size (at least 5 runs each): the
    # medians a report gives steady to a few percent on a quiet machine at 2 s.
    latency_budget_seconds: float = Field(2.0, gt=0)
    # One file per host that every worker process of the host opens: a job's latency
    # timing waits for the other jobs' training steps in flight and holds new ones back,
    # so two jobs on one host do not time each other's load (workers/engine/host_lock.py).
    # The same path for every deployment on the host; empty: no coordination.
    host_lock: Path | None = Path(tempfile.gettempdir()) / "modelpress-host.lock"
    log_level: str = "INFO"

    @field_validator("host_lock", mode="before")
    @classmethod
    def _empty_is_none(cls, v: object) -> object:
        return None if v == "" else v

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @model_validator(mode="after")
    def _defaults_and_checks(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'modelpress.db'}"
        if self.database_url.startswith(("postgresql://", "postgres://")):
            # psycopg 3 is the driver we ship; spell it out so SQLAlchemy does not look
            # for psycopg2.
            self.database_url = "postgresql+psycopg://" + self.database_url.split("://", 1)[1]
        if not self.database_url.startswith(("sqlite:///", "postgresql+psycopg://")):
            raise ValueError(
                "MODELPRESS_DATABASE_URL must be sqlite:///… or postgresql://… "
                f"(got scheme {self.database_url.split(':', 1)[0]!r})"
            )
        if not self.broker_url:
            self.broker_url = f"filesystem://{self.home / 'broker'}"
        if not self.broker_url.startswith(("redis://", "rediss://", "filesystem://", "memory://")):
            raise ValueError(
                "MODELPRESS_BROKER_URL must be redis://…, rediss://… or filesystem://…"
            )
        if not self.storage_url:
            self.storage_url = (self.home / "artifacts").as_uri()
        scheme = urlparse(self.storage_url).scheme
        if scheme not in ("file", "s3"):
            raise ValueError(
                "MODELPRESS_STORAGE_URL must be file:///abs/path or s3://bucket[/prefix]"
            )
        if scheme == "s3" and not urlparse(self.storage_url).netloc:
            raise ValueError("MODELPRESS_STORAGE_URL s3://… needs a bucket name")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def embedded(self) -> bool:
        return self.is_sqlite and self.broker_url.startswith("filesystem://")


@lru_cache
def get_settings() -> Settings:
    return Settings()
