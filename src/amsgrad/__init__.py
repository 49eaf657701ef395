"""amsgrad: MindSpore's ApplyAdamWithAmsgradV2 (the AMSGrad update), bit-exact, for NumPy,
PyTorch and JAX.

Functional API: :func:`apply_adam_with_amsgrad_v2` and :func:`apply_adam_with_amsgrad_v2_many`.
MindSpore-compatible surface: :class:`Tensor`, :class:`Parameter`, :mod:`amsgrad.ops`,
:mod:`amsgrad.nn`. Frameworks: :mod:`amsgrad.torch`, :mod:`amsgrad.jax`, :mod:`amsgrad.optax`
(optional extras).
"""

import numpy as _np

from amsgrad import nn, ops
from amsgrad._version import __version__
from amsgrad.adapters.mindspore_compat import Parameter, Tensor
from amsgrad.core.contract import DtypeConversionError, ScalarRangeError
from amsgrad.core.functional import apply_adam_with_amsgrad_v2, apply_adam_with_amsgrad_v2_many
from amsgrad.core.kernel import backend, get_num_threads, set_num_threads

float16 = _np.dtype(_np.float16)
float32 = _np.dtype(_np.float32)
float64 = _np.dtype(_np.float64)

__all__ = [
    "DtypeConversionError",
    "Parameter",
    "ScalarRangeError",
    "Tensor",
    "__version__",
    "apply_adam_with_amsgrad_v2",
    "apply_adam_with_amsgrad_v2_many",
    "backend",
    "float16",
    "float32",
    "float64",
    "get_num_threads",
    "nn",
    "ops",
    "set_num_threads",
]
