"""Errors the CLI prints as one line (no traceback unless SCBENCH_DEBUG=1).

Every layer raises them (data loading, tasks, methods, the runtime, the commands), so they live
apart from all of them.
"""


class UsageError(Exception):
    """Bad input from the user: a value, a path, a combination. Exit code 2."""


class RuntimeFailure(Exception):
    """The run could not proceed (server died, endpoint unreachable). Exit code 1."""
