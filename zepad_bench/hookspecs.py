"""Hook specifications of the zepad-bench plugin contract (see docs/plugins.md)."""

import pluggy

hookspec = pluggy.HookspecMarker("zepad_bench")
hookimpl = pluggy.HookimplMarker("zepad_bench")


@hookspec
def register_attacks(register):
    """Call ``register(cls)`` for each attack class (subclass of :class:`zepad_bench.Attack`)."""


@hookspec
def register_defenses(register):
    """Call ``register(cls)`` for each defense class (subclass of :class:`zepad_bench.Defense`)."""


@hookspec
def register_encoders(register):
    """Call ``register(cls)`` for each encoder source (subclass of :class:`zepad_bench.EncoderSource`)."""


@hookspec
def register_datasets(register):
    """Call ``register(cls)`` for each dataset source (subclass of :class:`zepad_bench.DatasetSource`)."""


@hookspec
def register_tasks(register):
    """Call ``register(cls)`` for each downstream task (subclass of :class:`zepad_bench.Task`)."""


@hookspec
def register_backbones(register):
    """Call ``register(name, builder)`` for each architecture: ``builder(**arch_params)`` returns an
    ``nn.Module`` mapping normalised images to features, with an integer ``out_dim``. Encoders of that
    ``arch`` are then built, cached, reloaded and attacked like the built-ins'."""
