"""Built-in encoders: SSL pretraining (``ssl``) and solo-learn checkpoints (``solo-learn``)."""

from zepad_bench import hookimpl
from zepad_bench_plugins.encoders.solo_learn import SoloLearnEncoder
from zepad_bench_plugins.encoders.ssl import SSLEncoder


@hookimpl
def register_encoders(register):
    register(SSLEncoder)
    register(SoloLearnEncoder)
