"""MindSpore checkpoints (``.ckpt``, ``.safetensors``) read and written without MindSpore.

The public entry of :mod:`amsgrad.adapters.mindspore_checkpoint` (which holds the code and its
documentation). ``import amsgrad.mindspore`` imports neither MindSpore nor protobuf.
"""

from amsgrad.adapters.mindspore_checkpoint import CheckpointError, load_checkpoint, save_checkpoint

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint"]
