"""Built-in datasets: offline sets from installed packages, and the paper's on-disk sets."""

from zepad_bench import hookimpl
from zepad_bench_plugins.datasets.folders import Animals10, ImageNet20
from zepad_bench_plugins.datasets.offline import Digits, LFWSubset, Photos
from zepad_bench_plugins.datasets.torchvision_sets import CIFAR10, GTSRB, STL10, SVHN


@hookimpl
def register_datasets(register):
    for cls in (Digits, LFWSubset, Photos, CIFAR10, STL10, SVHN, GTSRB, Animals10, ImageNet20):
        register(cls)
