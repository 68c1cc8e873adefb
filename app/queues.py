"""The names of the broker's queues, for the API, the CLI and the Celery app alike
(importable without Celery)."""

# Compression jobs: the "gpu" queue only where a GPU worker exists (MODELPRESS_GPU_WORKERS).
JOB_QUEUES = ("gpu", "cpu")
# Webhook deliveries have a queue of their own, served by a worker of their own: a slow
# receiver never waits behind a compression job, nor holds one up.
WEBHOOK_QUEUE = "webhooks"
QUEUES = (*JOB_QUEUES, WEBHOOK_QUEUE)
