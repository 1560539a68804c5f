"""``zepad-bench run --download``: fetch and verify what a suite needs before any stage runs.

Runs in the submitting process (also for ``--executor slurm``, whose compute nodes often have no
internet). Validation (``load_suite``) never downloads; it only lets a table marked for download
whose plugin has ``fetch()`` be missing its files.
"""

from __future__ import annotations

import click

from zepad_bench.suite import FETCHED, Suite, instantiate


def fetch_all(suite: Suite) -> list[str]:
    """Fetch every table in ``suite.download`` (datasets, encoders, then defenses); return those fetched.

    A marked table whose plugin cannot fetch (ANIMALS10, ImageNet20, outside plugins without
    ``fetch``) is checked instead, so its own instructions are the error. ``fetch`` is idempotent:
    files already present and verified are kept.
    """
    from zepad_bench.context import RunContext

    fetched = []
    for section in FETCHED:
        for id_ in suite.tables[section]:
            key = f"{section}.{id_}"
            if key not in suite.download:
                continue
            plugin = instantiate(suite, suite.registry, section, id_)
            plugin.ctx = RunContext(seed=suite.seed, image_size=suite.image_size)
            fetch = getattr(plugin, "fetch", None)
            if callable(fetch):
                click.echo(f"{key}: fetching and verifying", err=True)
                fetch()
                fetched.append(key)
            plugin.check()
    return fetched
