"""Server optimizers (FedOpt family)."""

from deai.optim.server import ServerAdaptive, ServerSGD

__all__ = ["ServerAdaptive", "ServerSGD"]
