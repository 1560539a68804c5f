"""Plugin tables → plugin objects: options validated and constructed, then each plugin's ``check()``.

The only module of the suite package that calls :mod:`zepad_bench.params`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zepad_bench.errors import Missing, SuiteError, SuiteMissing, UserError
from zepad_bench.params import build, options_model
from zepad_bench.suite.schema import KIND_OF

if TYPE_CHECKING:
    from zepad_bench.registry import Registry
    from zepad_bench.suite.model import Suite


def takes_param(cls: type, name: str) -> bool:
    """Whether plugin class ``cls`` has option ``name``."""
    return name in options_model(cls).model_fields


def instantiate(suite: Suite, registry: Registry, section: str, id_: str, eps: float | None = None):
    """Create the plugin object of table ``section.id_``; a bad param becomes a one-line :class:`SuiteError`
    naming the rule broken; a plugin's own user errors are prefixed with the suite file and the table."""
    spec = suite.spec(section, id_)
    cls = registry.get(KIND_OF[section], spec.plugin)
    key = f"{section}.{id_}"
    from zepad_bench.nn.backbones import plugin_backbones

    try:
        with plugin_backbones(registry.backbones):  # the registry's architectures (e.g. an `arch` checked)
            return build(cls, spec.params, *((eps,) if section == "attacks" else ()))
    except (TypeError, ValueError) as exc:  # the one rule broken (ParamError), or the plugin's own check
        plugin = "" if spec.plugin == id_ else f"(plugin {spec.plugin!r}) "
        raise SuiteError(suite.path, key, f"{plugin}{exc}") from None
    except Missing:
        raise
    except UserError as exc:
        raise SuiteError(suite.path, key, str(exc)) from None


def check_tables(suite: Suite, registry: Registry, checks: bool = True) -> None:
    """Build every table's plugin and run its ``check()`` (unless ``checks`` is false); every
    :class:`Missing` item of the suite is collected into one :class:`SuiteMissing`, any other problem
    raised at once. Tables that ``run --download`` will fetch skip ``check()``: validation never
    downloads."""
    missing: list[tuple[str, Missing]] = []
    for section, entries in suite.tables.items():
        for id_ in entries:
            key = f"{section}.{id_}"
            try:
                plugin = instantiate(suite, registry, section, id_, eps=suite.grid["eps"][0])
                if not checks or (key in suite.download and callable(getattr(plugin, "fetch", None))):
                    continue  # fetched by `run --download` before any work, or not checked
                plugin.check()
            except Missing as exc:
                missing.append((key, exc))
            except SuiteError:
                raise
            except UserError as exc:
                raise SuiteError(suite.path, key, str(exc)) from None
    if missing:
        raise SuiteMissing(suite.path, missing)
