"""Built-in encoders: SSL pretraining (``ssl``), solo-learn checkpoints (``solo-learn``), public hub
models (``hub``: timm; ``clip``: open_clip image towers)."""

from zepad_bench import hookimpl
from zepad_bench_plugins.encoders.hub import ClipEncoder, HubEncoder
from zepad_bench_plugins.encoders.solo_learn import SoloLearnEncoder
from zepad_bench_plugins.encoders.ssl import SSLEncoder


@hookimpl
def register_encoders(register):
    register(SSLEncoder)
    register(SoloLearnEncoder)
    register(HubEncoder)
    register(ClipEncoder)
