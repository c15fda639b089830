"""Batches of sample keys whose order is a pure function of (seed, epoch, position).

Resuming at step s needs no saved iterator state: the sampler starts at epoch
s // steps_per_epoch and skips the batches already done. Each rank of a distributed run
takes its own share of the shuffled order; every batch has the same size on every rank
(the incomplete tail of an epoch is dropped), so ranks stay in step.
"""

import torch

from detr_ros.training.dataset import SampleKey


def _mix(*numbers):
    """A 63-bit seed from several integers (SplitMix64-style mixing, stable across runs)."""
    value = 0x9E3779B97F4A7C15
    for number in numbers:
        value = (value ^ (number & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        value ^= value >> 31
    return value & 0x7FFFFFFFFFFFFFFF


class ResumableBatchSampler(torch.utils.data.Sampler):
    """Yields lists of SampleKey without end; sizes: the (height, width) choices, one drawn per batch."""

    def __init__(self, dataset_size, batch_size, sizes, seed, *, rank=0, world_size=1):
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.sizes = [tuple(size) for size in sizes]
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = dataset_size // (batch_size * world_size)
        self.start_step = 0
        if self.steps_per_epoch == 0:
            raise ValueError(f"{dataset_size} images are fewer than one batch of {batch_size} x {world_size} ranks")

    def start_at(self, step):
        """Continue from global step ``step`` (0-based) on the next iteration."""
        self.start_step = step

    def __iter__(self):
        step = self.start_step
        while True:
            epoch, position = divmod(step, self.steps_per_epoch)
            order = torch.randperm(self.dataset_size, generator=torch.Generator().manual_seed(_mix(self.seed, epoch)))
            per_step = self.batch_size * self.world_size
            start = position * per_step + self.rank * self.batch_size
            indices = order[start:start + self.batch_size].tolist()
            size_choice = _mix(self.seed, step, 1) % len(self.sizes)
            yield [SampleKey(index, _mix(self.seed, epoch, index), self.sizes[size_choice]) for index in indices]
            step += 1
