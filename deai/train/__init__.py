"""Local training: batched mini-batch SGD with FedProx and SCAFFOLD terms."""

from deai.train.local import LocalResult, LocalSpec, planned_steps, train_parties

__all__ = ["LocalResult", "LocalSpec", "planned_steps", "train_parties"]
