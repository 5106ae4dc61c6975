"""Errors a user can cause, kept in a module of their own so the CLI can catch them without importing
the modules that raise them (which would slow every start of the app)."""


class ConfigError(ValueError):
    """A config value a user supplied is invalid; the message names the field."""
