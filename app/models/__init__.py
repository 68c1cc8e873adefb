"""Teacher models uploaded by users."""
