"""Compression jobs: the state machine, events and artifacts."""
