"""The compression engine: a library with no web, database or queue imports.

This package's ``__init__`` stays import-light on purpose: the API imports
``app.jobspec.vocabulary`` (pure Python) to validate requests, and must not pull
torch in by doing so. Import the engine itself from ``workers.engine.compress``.
"""
