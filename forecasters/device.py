"""Which torch device a model runs on, and how to name it in a summary or a benchmark.

* :func:`resolve_device` turns a user's choice (``auto``, ``cpu``, ``cuda``, ``cuda:N``) into a
  ``torch.device``. ``auto`` means the GPU when torch can use one; asking for ``cuda`` on a
  machine without one is a user error (:class:`~forecasters.base.ForecastInputError`, one line),
  never a silent fall back to the CPU: a benchmark or a deployment that asked for a GPU must know.
* :func:`describe_device` names it for humans and benchmark files: ``cuda:0 (NVIDIA H100 80GB
  HBM3)`` or ``cpu (2 threads)``. The GPU name comes from torch; NVML (``pynvml``, from the
  ``nvidia-ml-py`` package) is a second source when torch cannot say. Without a GPU driver NVML
  raises ``NVMLError_LibraryNotFound``; that is handled, not an error.

torch is imported inside the functions, so importing this module stays cheap (the CLI lists
models without loading torch).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from forecasters.base import ForecastInputError

if TYPE_CHECKING:
    import torch

_NAME = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve_device(name: str = "auto") -> "torch.device":
    """The ``torch.device`` for ``auto`` (cuda when available, else cpu), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises ForecastInputError for another name, or for cuda on a machine where torch cannot use it.
    """
    import torch

    text = str(name).strip().lower()
    if not _NAME.match(text):
        raise ForecastInputError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ForecastInputError(f"device {name!r}: CUDA is not available to torch {torch.__version__} on this machine "
                                     "(no GPU, no driver, or a CPU-only build); use device 'cpu' or 'auto'")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ForecastInputError(f"device {name!r}: this machine has {count} CUDA device(s) (cuda:0 to cuda:{count - 1})")
    return device


def nvml_name(index: int) -> str | None:
    """The GPU's name from NVML, or None when NVML (the driver library or pynvml) is missing.

    NVML counts GPUs in PCI order, which may differ from CUDA's order under ``CUDA_VISIBLE_DEVICES``;
    it is only a second source for the name.
    """
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:  # NVMLError_LibraryNotFound without a driver, among others
        return None
    try:
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(index))
        return name.decode() if isinstance(name, bytes) else str(name)
    except pynvml.NVMLError:
        return None
    finally:
        pynvml.nvmlShutdown()


def describe_device(device: "torch.device | str") -> str:
    """``cuda:0 (NVIDIA H100 80GB HBM3)`` or ``cpu (N threads)``: what a summary or benchmark reports."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return f"{device.type} ({torch.get_num_threads()} threads)"
    index = device.index if device.index is not None else 0
    name: str | None = None
    try:
        if device.index is None:
            index = torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
    except (RuntimeError, AssertionError):  # torch built without CUDA, or no usable driver
        pass
    return f"cuda:{index} ({name or nvml_name(index) or 'unknown GPU'})"
