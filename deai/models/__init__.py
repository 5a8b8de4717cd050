"""Models: NumPy models with analytic gradients and a PyTorch adapter, all batched over parties."""

from deai.models.base import Model
from deai.models.numpy_models import MLP, LogisticRegression

__all__ = ["MLP", "LogisticRegression", "Model"]
