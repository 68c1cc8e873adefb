"""A teacher given by URI (``s3://<bucket>/<key>``): the rules are app/inputs.py's."""

from __future__ import annotations

from app.inputs import SERVICE_FOLDERS, InputRef, parse_input_uri
from app.settings import Settings, get_settings
from app.storage import Storage

__all__ = ["SERVICE_FOLDERS", "InputRef", "parse_model_uri"]


def parse_model_uri(uri: str, *, storage: Storage, settings: Settings | None = None) -> InputRef:
    return parse_input_uri(uri, storage=storage, settings=settings or get_settings(), kind="model")
