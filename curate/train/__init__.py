"""The bundled weighted-loss preference trainer. Importing this package imports torch."""

from curate.train.config import TrainConfig
from curate.train.losses import LOSSES, LossOutput
from curate.train.trainer import Trainer, TrainResult, train

__all__ = ["LOSSES", "LossOutput", "TrainConfig", "TrainResult", "Trainer", "train"]
