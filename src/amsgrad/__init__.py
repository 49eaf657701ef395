"""amsgrad: MindSpore's ApplyAdamWithAmsgradV2 (the AMSGrad update), bit-exact, for NumPy,
PyTorch and JAX.

Functional API: :func:`apply_adam_with_amsgrad_v2` and :func:`apply_adam_with_amsgrad_v2_many`.
MindSpore-compatible surface: :class:`Tensor`, :class:`Parameter`, :mod:`amsgrad.ops`,
:mod:`amsgrad.nn`. Frameworks: :mod:`amsgrad.torch`, :mod:`amsgrad.jax`, :mod:`amsgrad.optax`
(optional extras).
"""

import numpy as _np

from amsgrad import nn, ops
from amsgrad._contract import DtypeConversionError, ScalarRangeError
from amsgrad._kernel import backend, get_num_threads, set_num_threads
from amsgrad.compat import Parameter, Tensor
from amsgrad.functional import apply_adam_with_amsgrad_v2, apply_adam_with_amsgrad_v2_many

float16 = _np.dtype(_np.float16)
float32 = _np.dtype(_np.float32)
float64 = _np.dtype(_np.float64)

__version__ = "0.1.0"

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
