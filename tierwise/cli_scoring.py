"""`tierwise` commands for scoring; registered on the app defined in tierwise.cli."""

from tierwise.cli import app, console  # noqa: F401
