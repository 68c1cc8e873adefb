"""The names of the broker's queues and tasks, for the API, the CLI and the worker alike
(importable without Celery): the API sends a task by its name (``app/broker.py``), and
the worker registers its task code under the same name (``workers/tasks.py``,
``workers/webhook_delivery.py``)."""

# Compression jobs: the "gpu" queue only where a GPU worker exists (MODELPRESS_GPU_WORKERS).
JOB_QUEUES = ("gpu", "cpu")
# Webhook deliveries have a queue of their own, served by a worker of their own: a slow
# receiver never waits behind a compression job, nor holds one up.
WEBHOOK_QUEUE = "webhooks"
QUEUES = (*JOB_QUEUES, WEBHOOK_QUEUE)

# Run a compression job (one argument: the job id).
RUN_JOB_TASK = "modelpress.jobs.run"
# Deliver a webhook (one argument: the delivery id).
DELIVER_WEBHOOK_TASK = "modelpress.webhooks.deliver"
# Move a sweep on (one argument: the sweep's job id), sent when one of its children
# ends: plan the next round of candidates, or answer (app/sweeps/service.py).
ADVANCE_SWEEP_TASK = "modelpress.sweeps.advance"
