"""What the model's inputs are: the ``modality``, ``feature_names`` and ``tokenizer`` arguments, checked.

* :func:`check_modality`, :func:`check_feature_names` and :func:`check_tokenizer` check the arguments of
  the same names at construction, in the message style of :mod:`lrp_lightning._validation`.
* :class:`Modality` holds them, infers the modality from the first batch (integer token ids or a mapping
  with ``"input_ids"``: tokens; ``(C, H, W)``: image; ``(C, L)``: signal; ``(F,)``: tabular) and checks
  the batch against what was given.
* :func:`real_tokens` splits a token batch into each sample's token ids and relevance, padding removed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lrp_lightning._model_io import padding_mask_of, token_ids_of
from lrp_lightning._validation import argument_error
from lrp_lightning.store import (
    MODALITIES,
    MODALITY_IMAGE,
    MODALITY_SIGNAL,
    MODALITY_TABULAR,
    MODALITY_TOKENS,
    infer_modality,
)

_SHAPES = {MODALITY_IMAGE: "(C, H, W)", MODALITY_SIGNAL: "(C, L) or (L,)", MODALITY_TABULAR: "(F,)"}


def check_modality(modality: Any, owner: str) -> str | None:
    if modality is None or (isinstance(modality, str) and modality in MODALITIES):
        return modality
    raise argument_error(owner, "modality", f"None (inferred from the inputs) or one of {list(MODALITIES)}", modality)


def check_feature_names(feature_names: Any, modality: str | None, owner: str) -> list[str] | None:
    if feature_names is None:
        return None
    if (
        isinstance(feature_names, (str, bytes))
        or not isinstance(feature_names, Sequence)
        or not feature_names
        or not all(isinstance(name, str) for name in feature_names)
    ):
        raise argument_error(owner, "feature_names", "a list of str, one per input feature, or None", feature_names)
    if modality not in (None, MODALITY_TABULAR):
        raise argument_error(
            owner, "feature_names", "None unless modality='tabular'", feature_names, f"modality is {modality!r}"
        )
    return list(feature_names)


def check_tokenizer(tokenizer: Any, modality: str | None, owner: str) -> Any:
    if tokenizer is None:
        return None
    vocabulary = (
        isinstance(tokenizer, Sequence)
        and not isinstance(tokenizer, (str, bytes))
        and all(isinstance(token, str) for token in tokenizer)
    )
    if not (callable(getattr(tokenizer, "convert_ids_to_tokens", None)) or vocabulary):
        raise argument_error(
            owner,
            "tokenizer",
            "an object with convert_ids_to_tokens (e.g. a Hugging Face tokenizer), a list of token strings "
            "indexed by token id, or None",
            tokenizer,
        )
    if modality not in (None, MODALITY_TOKENS):
        note = f"modality is {modality!r}"
        raise argument_error(owner, "tokenizer", "None unless modality='tokens'", tokenizer, note)
    return tokenizer


def is_token_input(inputs: Any) -> bool:
    """Whether a batch's model input is token ids: an integer tensor or a mapping with ``"input_ids"``."""
    return token_ids_of(inputs) is not None


class Modality:
    """The run's modality, its feature names and tokenizer; fixed by the first batch unless given."""

    def __init__(self, modality: str | None, feature_names: list[str] | None, tokenizer: Any, owner: str) -> None:
        self.requested = modality
        self.feature_names = feature_names
        self.tokenizer = tokenizer
        self.owner = owner

    def of(self, inputs: Any) -> str:
        """The modality of a batch's model input, checked against ``modality=`` and ``feature_names=``."""
        if is_token_input(inputs):
            found = MODALITY_TOKENS
            if self.requested not in (None, MODALITY_TOKENS):
                raise ValueError(
                    f"{self.owner}: modality={self.requested!r}, but the model input is token ids (integers); pass "
                    "modality='tokens' or None"
                )
            return found
        shape = tuple(inputs.shape[1:])
        if self.requested == MODALITY_TOKENS:
            raise ValueError(
                f"{self.owner}: modality='tokens' needs token ids (an integer tensor (batch, tokens) or a dict with "
                f"'input_ids'), but the model input is a {inputs.dtype} tensor of shape {tuple(inputs.shape)}"
            )
        found = self.requested or infer_modality(shape)
        fits = {MODALITY_IMAGE: (3,), MODALITY_SIGNAL: (1, 2), MODALITY_TABULAR: (1,)}
        if found is None or len(shape) not in fits[found]:
            raise ValueError(
                f"{self.owner}: modality={found!r} needs inputs of shape (batch, *{_SHAPES.get(found, '...')}), got "
                f"{tuple(inputs.shape)}; pass the modality that fits ('image' (C, H, W), 'signal' (C, L), "
                "'tabular' (F,)) or reshape the inputs"
            )
        if self.feature_names is not None:
            if found != MODALITY_TABULAR:
                raise ValueError(
                    f"{self.owner}: feature_names are given, but the inputs of shape {shape} are {found!r}, not "
                    "'tabular' (F,); pass modality='tabular' or leave feature_names out"
                )
            if len(self.feature_names) != shape[0]:
                raise ValueError(
                    f"{self.owner}: feature_names has {len(self.feature_names)} names, but the inputs hold "
                    f"{shape[0]} features; pass one name per feature"
                )
        return found

    def token_strings(self, ids: Sequence[np.ndarray]) -> list[list[str]] | None:
        """Each sample's token strings from the tokenizer or vocabulary; None without one."""
        if self.tokenizer is None:
            return None
        result = []
        for row in ids:
            values = [int(v) for v in row]
            if hasattr(self.tokenizer, "convert_ids_to_tokens"):
                strings = self.tokenizer.convert_ids_to_tokens(values)
            else:
                size = len(self.tokenizer)
                bad = [v for v in values if not 0 <= v < size]
                if bad:
                    raise ValueError(
                        f"{self.owner}: token id {bad[0]} is not in the vocabulary given as tokenizer ({size} "
                        f"strings); pass a vocabulary with one string per token id (0..{max(values)})"
                    )
                strings = [self.tokenizer[v] for v in values]
            result.append([str(s) for s in strings])
        return result


def real_tokens(inputs: Any, relevance: Tensor | None = None) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Each sample's token ids (int64) and, with ``relevance`` ``(B, T)``, its relevance (float32), padding
    (``attention_mask == 0``) removed, in token order."""
    ids = token_ids_of(inputs)
    mask = padding_mask_of(inputs)
    keep = torch.ones(ids.shape, dtype=torch.bool) if mask is None else mask.detach().cpu().reshape(ids.shape) != 0
    ids = ids.detach().cpu()
    values = None if relevance is None else relevance.detach().float().cpu()
    token_rows, relevance_rows = [], None if values is None else []
    for row in range(ids.shape[0]):
        token_rows.append(ids[row][keep[row]].numpy().astype(np.int64))
        if values is not None:
            relevance_rows.append(values[row][keep[row]].numpy().astype(np.float32))
    return token_rows, relevance_rows


def batch_size_of(inputs: Any) -> int:
    """The number of samples of a batch's model input (a tensor or a mapping with ``"input_ids"``)."""
    if isinstance(inputs, Mapping):
        return int(token_ids_of(inputs).shape[0])
    return int(inputs.shape[0])
