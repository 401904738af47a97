"""The one user-error type, in a module with no heavy imports so the CLI can catch it cheaply."""


class DataError(ValueError):
    """Input that breaks a contract (tables, policy, model, request); its message is for the user, not a traceback."""
