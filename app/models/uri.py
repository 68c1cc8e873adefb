"""A teacher given by URI (``s3://<bucket>/<key>``): the rules are app/inputs.py's."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

from app.inputs import SERVICE_FOLDERS, InputRef, fetched_uri, parse_input_uri
from app.settings import Settings, get_settings
from app.storage import Storage

__all__ = ["SERVICE_FOLDERS", "InputRef", "fetched_model_uri", "parse_model_uri"]


def parse_model_uri(uri: str, *, storage: Storage, settings: Settings | None = None) -> InputRef:
    return parse_input_uri(uri, storage=storage, settings=settings or get_settings(), kind="model")


def fetched_model_uri(
    uri: str, *, storage: Storage, settings: Settings, max_bytes: int
) -> AbstractContextManager[tuple[Path, str]]:
    """The archive that ``uri`` names, in a temporary file: see app.inputs.fetched_uri."""
    return fetched_uri(uri, storage=storage, settings=settings, kind="model", max_bytes=max_bytes)
