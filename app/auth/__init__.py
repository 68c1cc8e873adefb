"""API keys, scopes and the tenant of each request."""
