"""One torch thread for the simulators' per-pixel work on small images: a second thread gains little, and on
shared cores OpenMP's waiting makes two threads many times slower than one."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["single_torch_thread"]


@contextlib.contextmanager
def single_torch_thread() -> Iterator[None]:
    """One torch intra-op thread inside the block, the previous number after it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
