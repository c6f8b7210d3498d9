"""Errors for bad input: one line, naming what and where, and the exit code the CLI uses.

Every problem a user can fix (a trace, a config file, a command-line value) is raised as an
:class:`InputError`. The CLI prints ``str(error)`` on one line and exits with code 2; it never
prints a traceback for these.
"""

from __future__ import annotations

import os


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


def read_text(path: str | os.PathLike, error: type[InputError] = InputError, kind: str = "file") -> str:
    """A UTF-8 text file's contents, or ``error`` naming the path (and the line of a bad byte).

    A byte-order mark, as some editors and spreadsheet exports write, is dropped.
    """
    where = str(path)
    try:
        with open(where, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise error(where, "no such file") from None
    except IsADirectoryError:
        raise error(where, f"is a directory, not a {kind}") from None
    except PermissionError:
        raise error(where, "permission denied") from None
    except OSError as exc:
        raise error(where, f"cannot read file: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(f"{where}:{line}", f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
