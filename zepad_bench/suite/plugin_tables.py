"""Plugin tables → plugin objects: declared-parameter checks, construction and each plugin's ``check()``.

The only module of the suite package that calls :mod:`zepad_bench.params`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zepad_bench.errors import Missing, SuiteError, SuiteMissing, UserError
from zepad_bench.params import check, declaration
from zepad_bench.suite.schema import KIND_OF

if TYPE_CHECKING:
    from zepad_bench.registry import Registry
    from zepad_bench.suite.model import Suite


def construct(cls: type, kind: str, params: dict[str, Any], eps: float | None = None) -> Any:
    """``cls`` built from ``params`` after checking them against its declaration (names, types, allowed
    values); ``TypeError``/``ValueError`` when they are bad. Attacks take the budget ``eps`` first."""
    check(cls, params)
    return cls(eps, **params) if kind == "attacks" else cls(**params)


def takes_param(cls: type, name: str) -> bool:
    """Whether plugin class ``cls`` declares parameter ``name``."""
    return name in declaration(cls).params


def instantiate(suite: Suite, registry: Registry, section: str, id_: str, eps: float | None = None):
    """Create the plugin object of table ``section.id_``; bad params become a :class:`SuiteError`; a
    plugin's own user errors are prefixed with the suite file and the table."""
    spec = suite.spec(section, id_)
    cls = registry.get(KIND_OF[section], spec.plugin)
    key = f"{section}.{id_}"
    try:
        return construct(cls, KIND_OF[section], spec.params, eps)
    except (TypeError, ValueError) as exc:
        raise SuiteError(suite.path, key, f"bad parameters for plugin {spec.plugin!r}: {exc}") from None
    except Missing:
        raise
    except UserError as exc:
        raise SuiteError(suite.path, key, str(exc)) from None


def check_tables(suite: Suite, registry: Registry) -> None:
    """Build every table's plugin and run its ``check()``; every :class:`Missing` item of the suite is
    collected into one :class:`SuiteMissing`, any other problem raised at once. Tables that
    ``run --download`` will fetch skip ``check()``: validation never downloads."""
    missing: list[tuple[str, Missing]] = []
    for section, entries in suite.tables.items():
        for id_ in entries:
            key = f"{section}.{id_}"
            try:
                plugin = instantiate(suite, registry, section, id_, eps=suite.grid["eps"][0])
                if key in suite.download and callable(getattr(plugin, "fetch", None)):
                    continue  # fetched by `run --download` before any work
                plugin.check()
            except Missing as exc:
                missing.append((key, exc))
            except SuiteError:
                raise
            except UserError as exc:
                raise SuiteError(suite.path, key, str(exc)) from None
    if missing:
        raise SuiteMissing(suite.path, missing)
