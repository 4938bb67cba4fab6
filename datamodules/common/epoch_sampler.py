"""A distributed sampler that tells the dataset the epoch, so random crops depend on (seed, epoch, index) only."""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import DistributedSampler

__all__ = ["EpochSampler"]


class EpochSampler(DistributedSampler):
    """:class:`~torch.utils.data.DistributedSampler` yielding ``(index, epoch)`` instead of ``index``.

    The order is DistributedSampler's: a permutation seeded by ``seed + epoch`` (padded to a multiple of
    ``num_replicas``), of which rank r takes elements r, r + R, r + 2R, … So at every step the R ranks
    together see exactly the samples one process with R× the batch size sees, and each sample's content
    (a function of seed, epoch and index) does not depend on the rank, the worker or the process.
    Lightning leaves a DistributedSampler in place and calls :meth:`set_epoch` before every epoch.
    """

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        epoch = self.epoch
        return ((index, epoch) for index in super().__iter__())
