"""Built-in downstream tasks."""

from zepad_bench_plugins.tasks.classification import Classification

from zepad_bench import hookimpl


@hookimpl
def register_tasks(register):
    register(Classification)
