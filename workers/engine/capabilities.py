"""Transitional re-export: the vocabulary moved to ``jobspec/vocabulary.py`` (the API and
the engine both import it there, docs/architecture.md). Import it from there; this
module goes once nothing reads it. Setting a name here changes nothing elsewhere."""

from jobspec.vocabulary import *  # noqa: F403
