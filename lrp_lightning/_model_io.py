"""How the engine calls a model and reads its output: tensors, token batches and structured outputs.

Shared by the attributors, the callbacks and the prediction writer, so that every part of the package
accepts the same inputs and outputs:

* :func:`select_output` picks the class scores from what ``forward`` returned: the tensor itself, a
  ``"logits"`` key or ``.logits`` attribute (Hugging Face ``ModelOutput`` objects), or what ``output=``
  names (a key, an attribute, an index into a tuple, a callable).
* :func:`call_model` calls a model with a tensor (``model(x)``) or a mapping of named inputs
  (``model(**batch)``, with only the keys that ``forward`` accepts, so that a batch may carry labels).
* :func:`token_ids_of` and :func:`padding_mask_of` read token ids and the padding mask (1 = real token)
  of a token batch: an integer tensor, or a mapping with ``"input_ids"`` (and ``"attention_mask"``).

This module imports only torch (no Lightning), so the engine can use it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn as nn

from ._validation import argument_error

Tensor = torch.Tensor
OutputSpec = None | str | int | Callable[[Any], Tensor]

__all__ = ["OutputSpec", "call_model", "check_output_spec", "padding_mask_of", "select_output", "token_ids_of"]

_OUTPUT_KINDS = "None, a key or attribute name (e.g. 'logits'), an index into a tuple, or a callable output -> tensor"


def check_output_spec(output: Any, owner: str | None = None) -> OutputSpec:
    """Check an ``output=`` argument (see :func:`select_output`) and return it."""
    if output is None or isinstance(output, str) or callable(output):
        return output
    if isinstance(output, int) and not isinstance(output, bool):
        return output
    raise argument_error(owner, "output", _OUTPUT_KINDS, output)


def _holds(raw: Any) -> str:
    """What a model output holds, for error messages."""
    if isinstance(raw, Tensor):
        return f"a tensor of shape {tuple(raw.shape)}"
    if isinstance(raw, Mapping):
        return f"{type(raw).__name__} with keys {list(raw.keys())}"
    if isinstance(raw, (tuple, list)):
        kinds = [f"tensor{tuple(v.shape)}" if isinstance(v, Tensor) else type(v).__name__ for v in raw]
        return f"{type(raw).__name__} of {len(raw)} items [{', '.join(kinds)}]"
    fields = [name for name in vars(raw) if not name.startswith("_")] if hasattr(raw, "__dict__") else []
    return f"{type(raw).__name__}" + (f" with attributes {fields}" if fields else "")


def select_output(raw: Any, output: OutputSpec = None, owner: str | None = None) -> Tensor:
    """The class scores in a model's output ``raw``.

    Parameters
    ----------
    raw : Any
        What ``forward`` returned.
    output : None, str, int or callable, optional
        ``None``: ``raw`` itself when it is a tensor, else its ``"logits"`` key (a mapping, including Hugging
        Face ``ModelOutput``) or ``.logits`` attribute. A str: that key or attribute. An int: that item of a
        tuple or list. A callable: ``output(raw)``.
    owner : str, optional
        Who asks, for error messages (e.g. ``"LRPCallback"``).

    Returns
    -------
    torch.Tensor
    """
    check_output_spec(output, owner)
    where = f"{owner}: " if owner else ""
    if output is None:
        if isinstance(raw, Tensor):
            return raw
        if isinstance(raw, Mapping) and "logits" in raw:
            value = raw["logits"]
        elif not isinstance(raw, Mapping) and isinstance(getattr(raw, "logits", None), Tensor):
            value = raw.logits
        else:
            raise TypeError(
                f"{where}the model returned {_holds(raw)}, not a tensor of scores and nothing named 'logits'; "
                "pass output= naming the scores (a key, an attribute, an index or a callable)"
            )
    elif callable(output) and not isinstance(output, str):
        value = output(raw)
    elif isinstance(output, str):
        if isinstance(raw, Mapping) and output in raw:
            value = raw[output]
        elif not isinstance(raw, Mapping) and hasattr(raw, output):
            value = getattr(raw, output)
        else:
            raise argument_error(
                owner, "output", f"a key or attribute of the model's output, which is {_holds(raw)}", output
            )
    else:
        if not isinstance(raw, (tuple, list)) or not -len(raw) <= output < len(raw):
            raise argument_error(owner, "output", f"an index into the model's output, which is {_holds(raw)}", output)
        value = raw[output]
    if not isinstance(value, Tensor):
        raise argument_error(
            owner, "output", "a selection that gives a tensor of scores", output, f"it gave {type(value).__name__}"
        )
    return value


def _accepted_keys(model: nn.Module) -> tuple[set[str], bool]:
    """The keyword names ``model.forward`` accepts and whether it takes ``**kwargs``."""
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):  # builtins without a signature: accept everything
        return set(), True
    names = set()
    var_keyword = False
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            var_keyword = True
        elif parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            names.add(parameter.name)
    return names, var_keyword


def call_model(model: nn.Module, inputs: Any) -> Any:
    """Call ``model`` on ``inputs``: a tensor (``model(x)``) or a mapping (``model(**accepted keys)``).

    A mapping is passed as keyword arguments, restricted to the names ``forward`` accepts (all of them when
    it takes ``**kwargs``), so that a batch may also carry labels. Raises ``TypeError`` when none match.
    """
    if not isinstance(inputs, Mapping):
        return model(inputs)
    names, var_keyword = _accepted_keys(model)
    kwargs = dict(inputs) if var_keyword else {key: value for key, value in inputs.items() if key in names}
    if not kwargs:
        raise TypeError(
            f"{type(model).__name__}.forward accepts none of the batch's keys {list(inputs)} (it takes "
            f"{sorted(names)}); rename the batch's keys or wrap the model so that forward takes them"
        )
    return model(**kwargs)


def token_ids_of(inputs: Any) -> Tensor | None:
    """The token ids of a token batch: an integer tensor, or a mapping's ``"input_ids"``; else None."""
    if isinstance(inputs, Mapping):
        ids = inputs.get("input_ids")
        return ids if isinstance(ids, Tensor) and not ids.is_floating_point() and not ids.is_complex() else None
    if (
        isinstance(inputs, Tensor)
        and not (inputs.is_floating_point() or inputs.is_complex())
        and inputs.dtype != torch.bool
    ):
        return inputs
    return None


def padding_mask_of(inputs: Any) -> Tensor | None:
    """A mapping's ``"attention_mask"`` (1 = real token, 0 = padding); None when there is none."""
    if isinstance(inputs, Mapping):
        mask = inputs.get("attention_mask")
        return mask if isinstance(mask, Tensor) else None
    return None
