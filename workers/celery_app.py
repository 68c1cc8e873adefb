"""The worker's Celery app: the API's broker configuration (``app/broker.py``) with the
task modules, which register their code under the task names of ``app/queues.py``.

Imported by worker processes only (``modelpress worker``, ``serve``): the API sends by
name and never imports this module, nor the engine or torch through it.
"""

from __future__ import annotations

from app.broker import make_celery

celery_app = make_celery(include=["workers.tasks", "workers.webhook_delivery", "workers.reaper"])
