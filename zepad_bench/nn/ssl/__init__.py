"""Self-supervised pretraining of encoders: the paper's eleven methods with solo-learn's CIFAR recipes."""

from zepad_bench.nn.ssl.evaluate import knn_accuracy, view_matching_accuracy
from zepad_bench.nn.ssl.train import METHODS, Pretrainer, pretrain, recipe

__all__ = ["METHODS", "Pretrainer", "knn_accuracy", "pretrain", "recipe", "view_matching_accuracy"]
