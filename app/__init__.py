"""The modelpress HTTP service."""
