"""Assertions shared by the CLI tests."""

from __future__ import annotations


def one_line_error(result) -> str:
    """Bad input's contract: exit code 2, exactly one stderr line `error: ...`, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    return lines[0]
