"""GPU faults: what an XID code means, how bad it is and what to do; NVML's throttle bits; the rules.

An XID is the NVIDIA driver's error report (``NVRM: Xid (PCI:...): 79, ...`` in the kernel log).
DCGM exposes the most recent one per GPU as ``DCGM_FI_DEV_XID_ERRORS``; :func:`aiops.detectors.gpu_faults`
turns a change of that value into an ``XID_<code>`` finding and looks the code up here. The rules
themselves (:func:`gpu_fault_findings`: XIDs, row-remap failures, double-bit ECC, throttling, full
memory) are at the end of this module, documented and thresholded in :func:`aiops.detectors.gpu_faults`.

Meanings follow NVIDIA's "XID Errors" documentation (docs.nvidia.com/deploy/xid-errors). The
``severity`` and ``action`` are our operational reading of NVIDIA's resolution buckets for data-centre
GPUs (A100/H100 and later), in the agent's action vocabulary:

* ``cordon_drain``: the node cannot be trusted until someone looks (reboot, reseat, RMA): cordon it
  so nothing new lands, drain what runs there.
* ``reset_gpu``: the GPU needs a reset (``nvidia-smi -r`` with nothing running on it) to recover or
  to activate a memory repair; the pods on that GPU must be moved first.
* ``restart_pod``: the application on the GPU crashed or hit its own bug; the GPU itself is fine.
* ``investigate``: informational, or it depends on what came before or after; a human should look.

Severity is ``critical`` where the GPU is unusable, its data may be wrong, or a repair failed;
``warning`` where the application (not the GPU) is the likely culprit or the event is a precursor.
An XID not in the catalogue is a ``warning`` to ``investigate`` (see :func:`lookup`).

The throttle ("clock event") reason bits are NVML's ``nvmlClocksThrottleReason*`` /
``nvmlClocksEventReason*`` constants (nvml.h; the same values in ``pynvml`` and in
:data:`aiops.gpu_exporter.THROTTLE_REASONS`), which is also what DCGM's
``DCGM_FI_DEV_CLOCK_THROTTLE_REASONS`` (``DCGM_FI_DEV_CLOCKS_EVENT_REASONS``) reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from aiops.detectors import DEFAULT_CONFIG, DetectorConfig, _align, _clean, _num, _order, _runs, _times, _when
from aiops.findings import Entity, Evidence, Finding
from forecasters.series import Series

ACTION_KINDS = ("cordon_drain", "reset_gpu", "restart_pod", "investigate")


@dataclass(frozen=True)
class XidInfo:
    """One XID code: NVIDIA's meaning, our severity, the suggested action kind and a sentence of advice."""

    code: int
    meaning: str
    severity: str  # "critical" or "warning"
    action: str  # one of ACTION_KINDS
    advice: str


def _x(code: int, meaning: str, severity: str, action: str, advice: str) -> tuple[int, XidInfo]:
    return code, XidInfo(code, meaning, severity, action, advice)


_CORDON = "cordon and drain the node, then reboot it; replace the GPU if it happens again"
_RESET = "move the pods off this GPU and reset it (nvidia-smi -r); cordon the node if it recurs"

XID_CATALOGUE: Mapping[int, XidInfo] = dict([
    _x(8, "GPU stopped processing (channel idle timeout)", "warning", "restart_pod",
       "restart the pod; if other XIDs follow or it recurs on this GPU only, reset the GPU"),
    _x(13, "Graphics Engine Exception", "warning", "restart_pod",
       "usually the application (out-of-range access, illegal instruction): restart the pod and check its logs; "
       "if several workloads hit it on this GPU only, treat the GPU as faulty"),
    _x(31, "GPU memory page fault", "warning", "restart_pod",
       "usually an application bug (illegal address): restart the pod and check its logs"),
    _x(32, "Invalid or corrupted push buffer stream", "warning", "investigate",
       "driver or PCIe problem more often than the application: check the driver and the PCIe link"),
    _x(38, "Driver firmware error", "critical", "reset_gpu", _RESET),
    _x(43, "GPU stopped processing (application fault: reset channel verification error)", "warning", "restart_pod",
       "the application crashed on the GPU; the GPU is usable: restart the pod"),
    _x(45, "Preemptive cleanup, due to previous errors", "warning", "investigate",
       "follows another failure (often a double-bit ECC error or a killed process): look for the XID before it"),
    _x(48, "Double Bit ECC Error (uncorrectable memory error)", "critical", "reset_gpu",
       "memory returned wrong data: move the pods off and reset the GPU to retire or remap the page"),
    _x(61, "Internal micro-controller breakpoint/warning", "warning", "investigate",
       "watch for XID 62 next; reset the GPU if it stops responding"),
    _x(62, "Internal micro-controller halt", "critical", "reset_gpu", _RESET),
    _x(63, "ECC page retirement or row remapping recording event", "warning", "reset_gpu",
       "a memory repair is recorded and takes effect at the next GPU reset: schedule a drain and reset"),
    _x(64, "ECC page retirement or row remapper recording failure", "critical", "cordon_drain",
       "a memory repair could not be recorded: cordon and drain the node and plan to replace the GPU"),
    _x(68, "NVDEC0 exception (video processor)", "warning", "restart_pod", "restart the pod; reset the GPU if it recurs"),
    _x(69, "Graphics Engine class error", "warning", "restart_pod", "restart the pod; reset the GPU if it recurs"),
    _x(74, "NVLink error", "critical", "reset_gpu",
       "an NVLink failed: move the pods off and reset the GPUs on the link; cordon the node if it recurs"),
    _x(79, "GPU has fallen off the bus", "critical", "cordon_drain",
       "the GPU is gone from PCIe and unusable: " + _CORDON),
    _x(92, "High single-bit ECC error rate", "warning", "investigate",
       "corrected errors are frequent: watch for uncorrectable ones and plan a reset or replacement"),
    _x(94, "Contained ECC error", "warning", "restart_pod",
       "an uncorrectable memory error hit one application, which was stopped: restart that pod; "
       "reset the GPU at the next drain to remap the row"),
    _x(95, "Uncontained ECC error", "critical", "reset_gpu",
       "an uncorrectable memory error could not be contained: every application on the GPU is affected; "
       "move the pods off and reset the GPU"),
    _x(109, "Context switch timeout", "warning", "restart_pod", "restart the pod; reset the GPU if it recurs"),
    _x(119, "GSP RPC timeout", "critical", "reset_gpu",
       "the GPU's system processor stopped answering the driver: " + _RESET),
    _x(120, "GSP error", "critical", "reset_gpu", "the GPU's system processor reported an error: " + _RESET),
    _x(140, "Unrecovered ECC error", "critical", "reset_gpu", _RESET),
    _x(154, "GPU recovery action changed", "critical", "reset_gpu",
       "the driver says the GPU needs recovery (reset or node reboot, see the kernel log): drain it and follow it"),
])


def lookup(code: int) -> XidInfo:
    """The catalogue entry for ``code``; an unknown code is a ``warning`` to ``investigate``."""
    info = XID_CATALOGUE.get(int(code))
    if info is not None:
        return info
    return XidInfo(int(code), f"XID {int(code)} (not in our catalogue)", "warning", "investigate",
                   "look the code up in NVIDIA's XID documentation and the node's kernel log")


# -- throttle ("clock event") reasons --------------------------------------------------------------
THROTTLE_REASONS: tuple[tuple[str, int], ...] = (
    ("gpu_idle", 0x1),
    ("applications_clocks_setting", 0x2),
    ("sw_power_cap", 0x4),
    ("hw_slowdown", 0x8),
    ("sync_boost", 0x10),
    ("sw_thermal_slowdown", 0x20),
    ("hw_thermal_slowdown", 0x40),
    ("hw_power_brake_slowdown", 0x80),
    ("display_clock_setting", 0x100),
    ("board_limit", 0x200),
    ("reliability", 0x400),
)
SW_POWER_CAP, HW_SLOWDOWN, SW_THERMAL, HW_THERMAL, HW_POWER_BRAKE = 0x4, 0x8, 0x20, 0x40, 0x80
THERMAL_BITS = HW_SLOWDOWN | SW_THERMAL | HW_THERMAL
POWER_BITS = SW_POWER_CAP | HW_POWER_BRAKE


def throttle_mask(value: float) -> int | None:
    """A sampled bitmask (Prometheus gives floats) as an int; None when it is not a valid mask."""
    if value is None or not math.isfinite(value) or value < 0 or value >= 2**32 or value != math.floor(value):
        return None
    return int(value)


def decode_throttle_reasons(mask: int) -> tuple[str, ...]:
    """The names of the reasons set in ``mask``, in bit order; unknown bits as ``bit_0x...``."""
    names = [name for name, bit in THROTTLE_REASONS if mask & bit]
    known = 0
    for _, bit in THROTTLE_REASONS:
        known |= bit
    rest = mask & ~known
    names.extend(f"bit_{1 << i:#x}" for i in range(32) if rest & (1 << i))
    return tuple(names)


def throttle_kind(mask: int) -> tuple[bool, bool]:
    """``(thermal, power)`` for one mask.

    HW slowdown (0x8) is NVML's catch-all for the hardware halving the clocks: temperature, the
    external power brake, or a power spike. Newer drivers also set HW thermal (0x40) or HW power
    brake (0x80) to say which; so 0x8 counts as thermal unless the power brake bit is set with it.
    """
    power = bool(mask & POWER_BITS)
    thermal = bool(mask & (SW_THERMAL | HW_THERMAL)) or bool(mask & HW_SLOWDOWN and not mask & HW_POWER_BRAKE)
    return thermal, power


# -- the rules --------------------------------------------------------------------------------------
# Accepted names per GPU signal: our query names, DCGM's field names, our NVML exporter's names.
GPU_METRICS: dict[str, tuple[str, ...]] = {
    "xid": ("gpu_xid_last", "DCGM_FI_DEV_XID_ERRORS"),
    "throttle": ("gpu_throttle_reasons", "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
                 "aiops_gpu_throttle_reasons"),
    "temperature": ("gpu_temperature_c", "DCGM_FI_DEV_GPU_TEMP", "aiops_gpu_temperature_celsius"),
    "row_remap_failure": ("gpu_row_remap_failure", "DCGM_FI_DEV_ROW_REMAP_FAILURE"),
    "ecc_dbe": ("gpu_ecc_dbe_total", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"),
}
MEMORY_PAIRS = (("gpu_memory_used_mib", "gpu_memory_free_mib"), ("DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"),
                ("aiops_gpu_memory_used_bytes", "aiops_gpu_memory_free_bytes"))


def gpu_fault_findings(gpus: Mapping[Entity, Mapping[str, Series]], *, min_steps: int | None = None,
                       config: DetectorConfig = DEFAULT_CONFIG) -> list[Finding]:
    """The rules behind :func:`aiops.detectors.gpu_faults` (documented there), per GPU and metric."""
    need = max(1, config.gpu_min_steps if min_steps is None else int(min_steps))
    out: list[Finding] = []
    for entity in sorted(gpus):
        metrics = gpus[entity]
        for name in GPU_METRICS["xid"]:
            if name in metrics:
                out.extend(_xid_findings(entity, name, metrics[name]))
        for name in GPU_METRICS["row_remap_failure"]:
            if name in metrics:
                out.extend(_flag_findings(entity, name, metrics[name]))
        for name in GPU_METRICS["ecc_dbe"]:
            if name in metrics:
                out.extend(_counter_findings(entity, name, metrics[name]))
        for name in GPU_METRICS["throttle"]:
            if name in metrics:
                out.extend(_throttle_findings(entity, name, metrics[name], need, config))
        for name in GPU_METRICS["temperature"]:
            if name in metrics:
                out.extend(_temperature_findings(entity, name, metrics[name], need, config))
        for used, free in MEMORY_PAIRS:
            if used in metrics and free in metrics:
                out.extend(_memory_findings(entity, used, metrics[used], metrics[free], need, config))
    return sorted(out, key=_order)


def _xid_findings(entity: Entity, name: str, series: Series) -> list[Finding]:
    values, times = _clean(series.values), _times(series)
    out, previous = [], 0.0
    idx = [i for i in range(len(values)) if math.isfinite(values[i])]
    for pos, i in enumerate(idx):
        code = values[i]
        if code == previous or code <= 0 or code != math.floor(code) or code > 1e6:
            previous = code
            continue
        end = pos
        while end + 1 < len(idx) and values[idx[end + 1]] == code:
            end += 1
        info = lookup(int(code))
        first_sample = pos == 0
        out.append(Finding(
            "gpu_faults", f"XID_{info.code}", entity, (times[i], times[idx[end]]), name, float(code), None,
            2.0 if info.severity == "critical" else 1.0, info.severity,
            f"{entity.label()} reported XID {info.code} ({info.meaning}) at {_when(times[i])}: {info.advice}.",
            (Evidence(name, ("last XID was already " if first_sample else f"last XID changed from {_num(previous)} to ")
                      + f"{info.code} (suggested action: {info.action})", float(code),
                      None if first_sample else float(previous), float(times[i])),)))
        previous = code
    return out


def _flag_findings(entity: Entity, name: str, series: Series) -> list[Finding]:
    values, times = _clean(series.values), _times(series)
    flag = np.isfinite(values) & (values > 0)
    out = []
    for first, last, _ in _runs(flag, np.isfinite(values), len(values)):  # sticky: only a 0 ends it
        out.append(Finding(
            "gpu_faults", "ROW_REMAP_FAILURE", entity, (times[first], times[last]), name, float(values[first]), (0.0, 0.0),
            2.0, "critical",
            f"{entity.label()} failed to remap a faulty memory row (from {_when(times[first])}): its memory cannot be "
            f"repaired; cordon and drain the node and plan to replace the GPU.",
            (Evidence(name, "row remap failure flag set", float(values[first]), 0.0, float(times[first])),)))
    return out


def _counter_findings(entity: Entity, name: str, series: Series) -> list[Finding]:
    values, times = _clean(series.values), _times(series)
    idx = np.flatnonzero(np.isfinite(values))
    rises = np.zeros(len(values), dtype=bool)
    rises[idx[1:]] = np.diff(values[idx]) > 0
    out = []
    for first, last, _ in _runs(rises, np.isfinite(values), 1):
        before = values[idx[np.searchsorted(idx, first) - 1]]
        added = float(values[last] - before)
        out.append(Finding(
            "gpu_faults", "ECC_UNCORRECTABLE", entity, (times[first], times[last]), name, float(values[last]),
            (float(before), float(before)), 1.0 + math.log10(max(added, 1.0)), "critical",
            f"{entity.label()} had {_num(added)} uncorrectable (double-bit) ECC error(s) from {_when(times[first])}: "
            f"results computed on it may be wrong; move the pods off and reset the GPU.",
            (Evidence(name, "volatile double-bit ECC count rose", float(values[last]), float(before), float(times[first])),)))
    return out


def _throttle_findings(entity: Entity, name: str, series: Series, need: int, config: DetectorConfig) -> list[Finding]:
    values, times = _clean(series.values), _times(series)
    masks = [throttle_mask(v) for v in values]
    valid = np.array([m is not None for m in masks], dtype=bool)
    kinds = [throttle_kind(m) if m is not None else (False, False) for m in masks]
    out = []
    for code, k in (("THERMAL_THROTTLE", 0), ("POWER_THROTTLE", 1)):
        flag = np.array([kind[k] for kind in kinds], dtype=bool)
        for first, last, count in _runs(flag, valid, config.max_gap_steps):
            if count < need:
                continue
            seen = 0
            for i in range(first, last + 1):
                seen |= masks[i] or 0
            reasons = ", ".join(r for r in decode_throttle_reasons(seen) if r != "gpu_idle")
            severity = "info" if code == "POWER_THROTTLE" and not seen & HW_POWER_BRAKE else "warning"
            what = ("check cooling (fans, airflow, inlet temperature) and the GPU's neighbours" if k == 0 else
                    "check the power limit and the node's power supply" if severity == "warning" else
                    "the GPU runs at its power cap; expect lower clocks, raise the limit only if the board allows it")
            out.append(Finding(
                "gpu_faults", code, entity, (times[first], times[last]), name, float(values[first]), None, count / need,
                severity,
                f"{entity.label()} was clock-throttled ({reasons}) for {count} samples from {_when(times[first])}: {what}.",
                (Evidence(name, f"throttle reasons {seen:#x}: {reasons}", float(seen), 0.0, float(times[first])),)))
    return out


def _temperature_findings(entity: Entity, name: str, series: Series, need: int, config: DetectorConfig) -> list[Finding]:
    values, times = _clean(series.values), _times(series)
    valid = np.isfinite(values)
    limit = config.slowdown_temp_c
    out = []
    for first, last, count in _runs(valid & (values >= limit), valid, config.max_gap_steps):
        if count < need:
            continue
        peak = float(np.nanmax(values[first:last + 1]))
        out.append(Finding(
            "gpu_faults", "THERMAL_THROTTLE", entity, (times[first], times[last]), name, peak, (0.0, limit),
            1.0 + (peak - limit) / 5.0, "warning",
            f"{entity.label()} ran at {_num(peak)} °C, at or above the {limit:g} °C slowdown temperature, for {count} samples "
            f"from {_when(times[first])}: check cooling before the clocks drop.",
            (Evidence(name, "temperature at or above the slowdown limit", peak, limit, float(times[first])),)))
    return out


def _memory_findings(entity: Entity, used_name: str, used: Series, free: Series, need: int,
                     config: DetectorConfig) -> list[Finding]:
    u, times = _clean(used.values), _times(used)
    f = _align(free, times)
    total = u + f
    with np.errstate(all="ignore"):
        ratio = np.where((total > 0) & (u >= 0) & (f >= 0), u / total, np.nan)
    valid = np.isfinite(ratio)
    out = []
    for first, last, count in _runs(valid & (ratio >= config.memory_full_ratio), valid, config.max_gap_steps):
        if count < need:
            continue
        worst = first + int(np.nanargmax(ratio[first:last + 1]))
        out.append(Finding(
            "gpu_faults", "GPU_MEMORY_FULL", entity, (times[first], times[last]), used_name, float(ratio[worst]),
            (0.0, config.memory_full_ratio), count / need, "warning",
            f"{entity.label()} had {ratio[worst]:.1%} of its memory in use for {count} samples from {_when(times[first])}: "
            f"the next allocation may fail (OOM); lower the batch or KV-cache size or spread the load.",
            (Evidence(used_name, "memory used / (used + free)", float(ratio[worst]), config.memory_full_ratio,
                      float(times[first])),)))
    return out
