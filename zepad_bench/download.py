"""``zepad-bench run --download``: fetch and verify what a suite needs before any stage runs.

Runs in the submitting process (also for ``--executor slurm``, whose compute nodes often have no
internet). Validation (``load_suite``) never downloads; it only lets a fetchable dataset be missing.
"""

from __future__ import annotations

import click

from zepad_bench.suite import Suite, instantiate


def fetch_datasets(suite: Suite) -> list[str]:
    """Fetch every dataset id in ``suite.download`` whose plugin can ``fetch()``; return those ids.

    A marked dataset that cannot be fetched (ANIMALS10, ImageNet20, outside plugins without
    ``fetch``) is checked instead, so its own instructions are the error.
    """
    from zepad_bench.context import RunContext

    fetched = []
    for id_ in sorted(suite.download):
        source = instantiate(suite, suite.registry, "datasets", id_)
        source.ctx = RunContext(seed=suite.seed, image_size=suite.image_size)
        fetch = getattr(source, "fetch", None)
        if not callable(fetch):
            source.check()
            continue
        click.echo(f"dataset {id_}: fetching and verifying", err=True)
        fetch()
        source.check()
        fetched.append(id_)
    return fetched


def fetch_all(suite: Suite) -> None:
    """Everything ``--download`` fetches for ``suite``."""
    fetch_datasets(suite)
