"""The machine a benchmark ran on, for its JSON: figures are only comparable on the same one."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path


def describe() -> dict:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), model)
    except OSError:
        pass
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            mem_gib = round(int(fh.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        mem_gib = None
    return {"cpu_model": model, "cpus": os.cpu_count(), "memory_gib": mem_gib, "platform": platform.platform(),
            "python": platform.python_version()}


def data_dir() -> Path:
    """The shared data folder: ``$AIOPS_DATA_DIR``, else ``../shared/data`` beside the repo."""
    return Path(os.environ.get("AIOPS_DATA_DIR", Path(__file__).resolve().parent.parent.parent / "shared" / "data"))


def trace_files(wanted: str = "") -> list[Path]:
    """The shared traces whose names contain one of the comma-separated ``wanted`` substrings
    (all of them for ""); empty, with a message, when the data is not there."""
    folder = data_dir() / "traces"
    if not folder.is_dir():
        print(f"no traces at {folder}: set AIOPS_DATA_DIR; nothing to do")
        return []
    return sorted(p for p in folder.glob("*.csv") if any(w in p.name for w in wanted.split(",")))


def save(document: dict, path) -> None:
    """Write a benchmark's JSON document and say where."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
