"""Client-side update transforms composed with :func:`chain`."""

from deai.transforms.base import Chain, ClipByNorm, RoundContext, UpdateTransform, chain

__all__ = ["Chain", "ClipByNorm", "RoundContext", "UpdateTransform", "chain"]
