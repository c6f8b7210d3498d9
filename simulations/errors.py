"""Errors for bad input: one line, naming what and where, and the exit code the CLI uses.

Every problem a user can fix (a trace, a config file, a command-line value) is raised as an
:class:`InputError`. The CLI prints ``str(error)`` on one line and exits with code 2; it never
prints a traceback for these.
"""

from __future__ import annotations


class InputError(ValueError):
    """A user-fixable problem with input, located as precisely as we can.

    ``where`` is a file path, optionally with ``:LINE`` or a dotted field path
    (``config.yaml: workloads[0].capacity_rps``); ``problem`` says what is wrong.
    """

    exit_code = 2

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


class TraceError(InputError):
    """A demand trace that cannot be used as it is."""


class ConfigError(InputError):
    """A configuration file or value that does not validate."""
