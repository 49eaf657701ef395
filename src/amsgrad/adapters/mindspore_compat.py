"""A MindSpore-shaped surface over the functional API: Tensor, Parameter, Cell and the primitive.

Only the part of MindSpore's behaviour that code around this operator uses is here: enough for
the documentation's example to run with ``mindspore`` replaced by ``amsgrad`` in its imports. It
is a thin layer, not a framework: a Tensor is a NumPy array with MindSpore's method names.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from amsgrad.core import contract as _contract
from amsgrad.core.functional import apply_adam_with_amsgrad_v2

__all__ = ["ApplyAdamWithAmsgradV2", "Cell", "Parameter", "Tensor"]


class Tensor:
    """An n-dimensional array that owns its data (a copy of what it was built from).

    ``Tensor(input_data, dtype=None)``: input_data is an array, a Tensor, or a Python number
    (float becomes float32, int int64, bool bool, as in MindSpore); dtype is a NumPy dtype.
    """

    __slots__ = ("_data",)
    _data: np.ndarray

    def __init__(self, input_data: Any, dtype: Any = None) -> None:
        if isinstance(input_data, Tensor):
            input_data = input_data._data
        if dtype is None and isinstance(input_data, float):
            dtype = np.float32
        if isinstance(input_data, (str, bytes)) or input_data is None:
            raise TypeError(
                f"Tensor: input_data must be an array, a Tensor or a number, got "
                f"{type(input_data).__name__}"
            )
        self._data = np.array(input_data, dtype=dtype, copy=True)

    @property
    def dtype(self) -> np.dtype:
        """The element type (a NumPy dtype)."""
        return self._data.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape, a tuple of ints."""
        return self._data.shape

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def size(self) -> int:
        return self._data.size

    def asnumpy(self) -> np.ndarray:
        """A NumPy copy of the data."""
        return self._data.copy()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self._data if dtype is None else self._data.astype(dtype)

    def __repr__(self) -> str:
        return f"Tensor(shape={list(self.shape)}, dtype={self.dtype}, value=\n{self._data})"

    def __str__(self) -> str:
        return str(self._data)


class Parameter(Tensor):
    """A named Tensor that the operator updates in place.

    ``Parameter(default_input, name=None, requires_grad=True)``: default_input is a Tensor, an
    array or a number; its data is copied once at construction.
    """

    __slots__ = ("name", "requires_grad")

    def __init__(self, default_input: Any, name: str | None = None, requires_grad: bool = True):
        super().__init__(default_input)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Parameter: name must be a str or None, got {type(name).__name__}")
        self.name = name
        self.requires_grad = bool(requires_grad)

    def set_data(self, data: Any) -> Parameter:
        """Replace the data (a Tensor or array of the same dtype and shape is copied in)."""
        new = np.asarray(data._data if isinstance(data, Tensor) else data)
        if new.shape != self.shape:
            raise ValueError(f"set_data: expected shape {self.shape}, got shape {new.shape}")
        if new.dtype != self.dtype:
            raise TypeError(f"set_data: expected dtype {self.dtype}, got dtype {new.dtype}")
        np.copyto(self._data, new)
        return self

    def __repr__(self) -> str:
        return f"Parameter(name={self.name}, shape={list(self.shape)}, dtype={self.dtype})"


class Cell:
    """A network cell: calling it runs ``construct`` with the same arguments."""

    def construct(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("a Cell subclass must define construct()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.construct(*args, **kwargs)


def _unwrap(value: Any) -> Any:
    return value._data if isinstance(value, Tensor) else value


class ApplyAdamWithAmsgradV2:
    """``ApplyAdamWithAmsgradV2(use_locking=False)``: MindSpore's primitive, on this library.

    Calling it with (var, m, v, vhat, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad)
    updates var, m, v, vhat (Parameters, Tensors or NumPy arrays) in place and returns them, as
    the same objects. Hyper-parameter Tensors count as tensors in the dtype rules.
    """

    def __init__(self, use_locking: bool = False) -> None:
        self.use_locking = _contract.check_use_locking(use_locking)

    def __call__(self, *inputs: Any) -> tuple[Any, Any, Any, Any]:
        """The eleven inputs in MindSpore's order (``contract.ARG_NAMES``), positionally."""
        if len(inputs) != len(_contract.ARG_NAMES):
            raise TypeError(
                f"ApplyAdamWithAmsgradV2: expected the {len(_contract.ARG_NAMES)} inputs "
                f"({', '.join(_contract.ARG_NAMES)}), got {len(inputs)}"
            )
        apply_adam_with_amsgrad_v2(*map(_unwrap, inputs), use_locking=self.use_locking)
        return inputs[0], inputs[1], inputs[2], inputs[3]
