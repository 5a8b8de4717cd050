"""Client-side update transforms composed with :func:`chain`."""

from deai.transforms.base import Chain, ClipByNorm, TransformContext, UpdateTransform, chain

__all__ = ["Chain", "ClipByNorm", "TransformContext", "UpdateTransform", "chain"]
