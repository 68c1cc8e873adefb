"""Sweeps (issue #17): a target in the user's own terms (``target.min_retention``,
``target.max_latency_ms``) answered by training several speedup students and picking
among them. ``policy.py`` decides which speed-ups to try and which student answers; it
is plain Python, torch-free, so the API and the job that runs the sweep both use it
(docs/sweeps.md)."""
