"""Seeding: every stage starts from :func:`seed_everything`; code that draws from libraries' global
random generators (ART) seeds them for a block with :func:`seeded_global_rng`. Plugins may use both."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch; on CUDA also ask cuDNN for deterministic kernels (CPU runs are
    bit-reproducible; GPU runs are as reproducible as torch's CUDA kernels allow)."""
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def seeded_global_rng(seed: int) -> Iterator[None]:
    """Seed NumPy's and torch's global RNGs (CUDA's too) for the block, then restore them (ART draws
    from them)."""
    np_state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
            torch.manual_seed(seed)
            yield
    finally:
        np.random.set_state(np_state)
