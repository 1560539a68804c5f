"""Cache codec of branch heads: any ``nn.Module`` head as plain data (no pickled code).

An :class:`~zepad_bench.nn.heads.MLPHead` is stored as ``in_dim``, ``num_classes`` and its state
dict (the fast path); any other head as its class path (``module:QualName``), its ``init_kwargs``
(an attribute the head sets to the plain-data keyword arguments that rebuild it) and its state dict.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from zepad_bench.nn.heads import MLPHead


def _cpu_state(module: nn.Module) -> dict[str, Any]:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def head_state(head: nn.Module | None) -> dict[str, Any] | None:
    if head is None:
        return None
    if type(head) is MLPHead:
        return {"in_dim": head.in_dim, "num_classes": head.num_classes, "state_dict": _cpu_state(head)}
    kwargs = getattr(head, "init_kwargs", None)
    if not isinstance(kwargs, dict):
        raise TypeError(
            f"branch head {type(head).__qualname__} cannot be cached: set `self.init_kwargs` to the "
            "keyword arguments (plain data) that rebuild it, or use zepad_bench.nn.heads.MLPHead"
        )
    cls = type(head)
    return {"class": f"{cls.__module__}:{cls.__qualname__}", "init": kwargs, "state_dict": _cpu_state(head)}


def head_from_state(state: dict[str, Any] | None) -> nn.Module | None:
    if state is None:
        return None
    if "class" not in state:
        head: nn.Module = MLPHead(state["in_dim"], state["num_classes"])
    else:
        module, _, qualname = state["class"].partition(":")
        cls: Any = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"cached head class {state['class']} is not an nn.Module")
        head = cls(**state["init"])
    head.load_state_dict(state["state_dict"])
    return head.eval()
