"""The one exception the harness raises for anything that went wrong."""


class LabError(RuntimeError):
    """A lab operation failed; the message says which step and why."""
