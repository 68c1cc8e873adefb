"""Datasets uploaded by users."""
