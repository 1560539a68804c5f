"""Where and when a run happens: the device it uses, the machine description and timestamps stored with
every result."""

from __future__ import annotations

import datetime as dt
import os
import platform
from typing import Any

from zepad_bench.errors import UserError


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; CUDA asked of a machine without it is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available on this machine")
    return device


def now(timespec: str = "seconds") -> str:
    """The current UTC time as ISO 8601 (``timespec`` as for :meth:`datetime.isoformat`)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec=timespec)


def cpu_count() -> int:
    """CPUs this process may run on (its affinity where the platform says)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def machine_info(device: str) -> dict[str, Any]:
    """Platform, Python, CPUs and device (with the GPU's name on CUDA)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": cpu_count(),
        "device": device,
    }
    if device.startswith("cuda"):
        import torch

        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info
