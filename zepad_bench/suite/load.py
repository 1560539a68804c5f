"""``load_suite``: a suite file, read and fully validated before any work, in the order a reader checks it."""

from __future__ import annotations

from pathlib import Path

from zepad_bench.errors import SuiteError
from zepad_bench.registry import Registry
from zepad_bench.suite.model import Suite
from zepad_bench.suite.plugin_modules import with_suite_plugins
from zepad_bench.suite.plugin_tables import check_tables
from zepad_bench.suite.protocol import apply_protocol
from zepad_bench.suite.reading import read_toml
from zepad_bench.suite.schema import check_references, read_grid, read_head, read_tables


def load_suite(path: str | Path, registry: Registry, download: bool = False) -> Suite:
    """Parse and fully validate a suite: names, types, budgets, references, plugin params, data paths.

    Tables to be downloaded (``download``: every dataset and encoder; else datasets with
    ``download = true``) whose plugin can ``fetch()`` skip the path check; validation never downloads.
    Every missing dataset, checkpoint or package is reported at once (``SuiteMissing``).
    """
    path = Path(path)
    raw = read_toml(path)
    head = read_head(path, raw)
    registry = with_suite_plugins(path, head.plugins, registry)
    tables, downloads = read_tables(path, raw, registry, download)
    check_references(path, head, tables)
    grid = read_grid(path, raw, head, tables)
    apply_protocol(path, head.protocol, tables["defenses"], registry)
    suite = Suite(
        path,
        head.name,
        head.seed,
        head.device,
        head.image_size,
        head.eps,
        head.attacker_data,
        head.batch_size,
        head.plugins,
        tables,
        grid,
        raw,
        registry,
        downloads,
        head.precision,
        head.adaptive_eps,
    )
    bad = suite.unsupported_pairing()
    if bad:
        key = f"attacks.{bad[0]}.scenarios" if "scenarios" in tables["attacks"][bad[0]].reserved else "grid"
        raise SuiteError(path, key, bad[2])
    check_tables(suite, registry)
    return suite
