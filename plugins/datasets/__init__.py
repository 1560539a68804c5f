"""Built-in datasets."""

from zepad_bench import hookimpl


@hookimpl
def register_datasets(register):
    pass
