"""The machine a run is on: the device it uses, a description stored with results, timestamps."""

from __future__ import annotations

import datetime as dt
import os
import platform
from typing import Any

import torch

from zepad_bench.errors import UserError


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available on this machine")
    return device


def machine_info(device: str) -> dict[str, Any]:
    """Platform, Python, usable CPU count, device (and the GPU's name): stored with every result."""
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": _cpu_count(),
        "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def now(timespec: str = "seconds") -> str:
    """The current UTC time as an ISO string (``timespec`` as :meth:`datetime.isoformat` takes it)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec=timespec)
