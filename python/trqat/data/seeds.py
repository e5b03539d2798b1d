"""Seeds mixed from several ints: the batch of step t depends on (seed, t) only."""
import numpy as np
import torch

PERM, AUG, SYNTHETIC, WORKER = 0, 1, 2, 3  # stream tags: epoch order, augmentation, synthetic data, loader processes


def seed_for(*ints: int) -> int:
    """A 64-bit seed mixing several ints (run seed, stream tag, epoch or step)."""
    return int(np.random.SeedSequence(list(ints)).generate_state(1, np.uint64)[0])


def generator(*ints: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed_for(*ints))
