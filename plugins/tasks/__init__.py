"""Built-in downstream tasks."""

from zepad_bench import hookimpl
from zepad_bench_plugins.tasks.classification import Classification
from zepad_bench_plugins.tasks.detection import Detection
from zepad_bench_plugins.tasks.retrieval import Retrieval


@hookimpl
def register_tasks(register):
    for cls in (Classification, Retrieval, Detection):
        register(cls)
