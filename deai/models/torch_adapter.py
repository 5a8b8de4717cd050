"""Any ``torch.nn.Module`` as a deai :class:`~deai.models.base.Model`, batched over parties.

The engine hands a model ``[P, dim]`` parameter rows and ``[P, B, F]`` data; this adapter
computes every party's loss and gradient in one call by slicing each row into the module's
parameter shapes (views, no copies), running the module functionally
(``torch.func.functional_call``) and mapping ``torch.func.grad`` over the party axis with
``torch.func.vmap``. Modules that vmap cannot batch fall back to a per-party loop.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
from torch.func import functional_call, grad, vmap

from deai.params import Layout

_Out = TypeVar("_Out")

# Input floats (parties x examples x features) per vmapped sub-call when chunk_size is None.
_AUTO_CHUNK_INPUT_FLOATS = 2**18

# Buffers that a normalization layer updates from each batch: one shared buffer cannot hold
# P parties' running statistics, and per-batch statistics would mix padding into real rows.
_RUNNING_BUFFER_NAMES = ("running_mean", "running_var", "num_batches_tracked")


def _check_no_running_buffers(module: torch.nn.Module) -> None:
    for name, sub in module.named_modules():
        has_running = any(b in _RUNNING_BUFFER_NAMES for b, _ in sub.named_buffers(recurse=False))
        if has_running or isinstance(sub, torch.nn.modules.batchnorm._BatchNorm):
            where = name or type(module).__name__
            raise ValueError(
                f"module {where!r} ({type(sub).__name__}) keeps running batch statistics, which "
                "cannot be batched over parties; use GroupNorm/LayerNorm instead of BatchNorm"
            )


def _as_tensor(array: np.ndarray, dtype: np.dtype) -> torch.Tensor:
    """A tensor sharing memory with ``array`` when it already has the right dtype and layout."""
    array = np.ascontiguousarray(array, dtype=dtype)
    if not array.flags.writeable:  # torch.from_numpy warns on read-only arrays
        array = array.copy()
    return torch.from_numpy(array)


class TorchModel:
    """Batched loss, gradient and logits of a PyTorch classifier over many parties' parameters.

    Parameters
    ----------
    module:
        Any classifier mapping ``[B, *input_shape]`` to ``[B, num_classes]`` logits. It is
        copied (the caller's module is never changed) and run in eval mode: dropout-style
        randomness would make a party's gradient depend on a global generator.
    num_classes:
        Number of output classes ``C``.
    input_shape:
        Shape of one example, e.g. ``(1, 28, 28)``; the flat ``[.., F]`` features are reshaped
        to it before the forward pass. ``None`` feeds ``[B, F]`` unchanged.
    chunk_size:
        Parties per vectorized sub-call; bounds activation memory for large ``P``. ``None``
        picks it from the input size (about 2**18 input floats per sub-call).
    vectorize:
        ``False`` always runs the per-party loop. On CPU a loop can win when each party's work
        is already large (measured: the small CNN on 28x28 images, 32 per batch); vmap wins
        when it is small (8x8 digits: about 2.5x faster).

    Only trainable parameters (``requires_grad``) enter the flat vector; frozen parameters and
    constant buffers stay shared by all parties.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        num_classes: int,
        input_shape: tuple[int, ...] | None = None,
        *,
        chunk_size: int | None = None,
        vectorize: bool = True,
    ) -> None:
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if chunk_size is not None and int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}")
        _check_no_running_buffers(module)
        if any(isinstance(m, torch.nn.modules.dropout._DropoutNd) for m in module.modules()):
            warnings.warn(
                "TorchModel runs the module in eval mode, so its dropout layers are inactive",
                stacklevel=2,
            )
        self._module = copy.deepcopy(module).eval()
        self.num_classes = int(num_classes)
        self.input_shape = None if input_shape is None else tuple(int(s) for s in input_shape)
        self._features = None if self.input_shape is None else int(np.prod(self.input_shape))
        self._chunk_size = None if chunk_size is None else int(chunk_size)
        self.layout = Layout.from_shapes(
            {name: tuple(p.shape) for name, p in self._module.named_parameters() if p.requires_grad}
        )
        if self.layout.dim == 0:
            raise ValueError("module has no trainable parameters (none with requires_grad=True)")
        self._use_vmap = bool(vectorize)

    # ------------------------------------------------------------------ helpers
    def _unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {e.name: flat[e.offset : e.offset + e.size].view(e.shape) for e in self.layout.entries}

    def _forward(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.input_shape is not None:
            x = x.reshape(x.shape[0], *self.input_shape)
        return functional_call(self._module, self._unflatten(flat), (x,))

    def _party_loss(
        self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor, m: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        nll = torch.nn.functional.cross_entropy(self._forward(flat, x), y, reduction="none")
        loss = (nll * m).sum() / m.sum().clamp_min(1.0)
        return loss, loss.detach()

    def _parties_per_call(self, X: torch.Tensor) -> int:
        if self._chunk_size is not None:
            return self._chunk_size
        # Measured on CPU: once a vmapped call's activations outgrow the caches, elementwise
        # ops become memory-bound and one huge call is up to 2x slower than a few chunks.
        return max(1, _AUTO_CHUNK_INPUT_FLOATS // max(1, X.shape[1] * X.shape[2]))

    def _check_inputs(self, W: np.ndarray, X: np.ndarray) -> None:
        if W.ndim != 2 or W.shape[1] != self.layout.dim:
            raise ValueError(f"W must have shape [P, {self.layout.dim}], got {W.shape}")
        if X.ndim != 3 or X.shape[0] != W.shape[0]:
            raise ValueError(f"X must have shape [P={W.shape[0]}, B, F], got {X.shape}")
        if self._features is not None and X.shape[2] != self._features:
            raise ValueError(
                f"X has {X.shape[2]} features per example, input_shape {self.input_shape} "
                f"needs {self._features}"
            )

    def _vectorized_or_looped(self, vectorized: Callable[[], _Out], looped: Callable[[], _Out]) -> _Out:
        """``vectorized()`` while vmap can batch this module; ``looped()`` from its first failure on."""
        if not self._use_vmap:
            return looped()
        try:
            return vectorized()
        except Exception as vmap_error:
            # The loop tells "vmap cannot batch this op" apart from a genuine error in the
            # module or the data: the latter fails in the loop too, and is raised from there.
            result = looped()
            self._use_vmap = False
            warnings.warn(
                f"torch.func.vmap cannot batch {type(self._module).__name__} "
                f"({type(vmap_error).__name__}: {vmap_error}); falling back to a slower "
                "per-party loop",
                RuntimeWarning,
                stacklevel=3,
            )
            return result

    # ------------------------------------------------------------------ Model protocol
    def init_params(self, seed: int) -> np.ndarray:
        """Re-run every submodule's ``reset_parameters`` under a forked RNG seeded with ``seed``.

        The global torch generator is restored afterwards, so other code sees no change.
        Frozen parameters keep their values; parameters of modules without
        ``reset_parameters`` keep their construction values (identical for every seed).
        """
        frozen = {n: p.detach().clone() for n, p in self._module.named_parameters() if not p.requires_grad}
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(int(seed))
            for sub in self._module.modules():
                reset = getattr(sub, "reset_parameters", None)
                if callable(reset):
                    reset()
            for name, value in frozen.items():
                self._module.get_parameter(name).copy_(value)
        params = dict(self._module.named_parameters())
        vector = np.empty(self.layout.dim, dtype=np.float32)
        for e in self.layout.entries:
            vector[e.offset : e.offset + e.size] = params[e.name].detach().reshape(-1).numpy()
        return vector

    def loss_grad(
        self, W: np.ndarray, X: np.ndarray, y: np.ndarray, mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-party mean cross-entropy over masked examples ``[P]`` and its gradient ``[P, dim]``."""
        self._check_inputs(W, X)
        if y.shape != X.shape[:2] or mask.shape != X.shape[:2]:
            raise ValueError(f"y and mask must have shape {X.shape[:2]}, got {y.shape} and {mask.shape}")
        real_labels = np.asarray(y)[np.asarray(mask) > 0]
        if real_labels.size and (real_labels.min() < 0 or real_labels.max() >= self.num_classes):
            raise ValueError(
                f"labels of unmasked examples must lie in [0, {self.num_classes}), "
                f"got values from {real_labels.min()} to {real_labels.max()}"
            )
        if W.shape[0] == 0:
            return np.zeros(0, np.float32), np.zeros((0, self.layout.dim), np.float32)
        w_t = _as_tensor(W, np.float32)
        x_t = _as_tensor(X, np.float32)
        m_t = _as_tensor(mask, np.float32)
        # Padding rows may carry any label; point them at class 0 so cross_entropy accepts them.
        y_t = torch.where(m_t > 0, _as_tensor(y, np.int64), 0)
        chunk = self._parties_per_call(x_t)

        def vectorized() -> tuple[torch.Tensor, torch.Tensor]:
            # Built per call (cheaply) rather than stored, so the model stays picklable.
            loss_grad = grad(self._party_loss, has_aux=True)
            return vmap(loss_grad, chunk_size=chunk)(w_t, x_t, y_t, m_t)

        def looped() -> tuple[torch.Tensor, torch.Tensor]:
            # Plain autograd per party: measured faster than torch.func.grad one party at a time.
            grads, losses = torch.empty_like(w_t), torch.empty_like(w_t[:, 0])
            with torch.enable_grad():
                for p in range(w_t.shape[0]):
                    flat = w_t[p].detach().requires_grad_(True)
                    loss, losses[p] = self._party_loss(flat, x_t[p], y_t[p], m_t[p])
                    (grads[p],) = torch.autograd.grad(loss, flat)
            return grads, losses

        grads, losses = self._vectorized_or_looped(vectorized, looped)
        return losses.numpy(), grads.numpy()

    def logits(self, W: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Batched forward pass: ``W [P, dim]``, ``X [P, B, F]`` -> ``[P, B, C]`` float32."""
        self._check_inputs(W, X)
        if W.shape[0] == 0:
            return np.zeros((0, X.shape[1], self.num_classes), np.float32)
        w_t, x_t = _as_tensor(W, np.float32), _as_tensor(X, np.float32)
        chunk = self._parties_per_call(x_t)
        with torch.no_grad():
            out = self._vectorized_or_looped(
                lambda: vmap(self._forward, chunk_size=chunk)(w_t, x_t),
                lambda: torch.stack([self._forward(w_t[p], x_t[p]) for p in range(w_t.shape[0])]),
            )
        return out.numpy()
