"""Celery workers and the compression engine."""
