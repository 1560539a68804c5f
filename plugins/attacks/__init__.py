"""Built-in attacks."""

from zepad_bench import hookimpl


@hookimpl
def register_attacks(register):
    pass
