"""Shells: CLI, REST API, dashboard. Thin: they call the service layer and add nothing of their own."""
