"""Built-in downstream tasks."""

from zepad_bench import hookimpl
from zepad_bench_plugins.tasks.classification import Classification


@hookimpl
def register_tasks(register):
    register(Classification)
