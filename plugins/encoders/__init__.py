"""Built-in encoders."""

from zepad_bench import hookimpl


@hookimpl
def register_encoders(register):
    pass
