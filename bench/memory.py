"""Peak memory of a benchmark process, measured in a fresh subprocess per case."""

from __future__ import annotations

import resource
import sys

import torch

__all__ = ["peak_rss_bytes", "peak_memory_bytes"]


def peak_rss_bytes() -> int:
    """Peak resident memory (bytes) of this process since its exec.

    ``VmHWM`` of ``/proc/self/status`` where there is one (Linux): ``ru_maxrss`` also counts the memory the
    parent held when it forked this process. Elsewhere ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def peak_memory_bytes(device: torch.device) -> int:
    """``torch.cuda.max_memory_allocated`` on CUDA, else the process's :func:`peak_rss_bytes`."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return peak_rss_bytes()
