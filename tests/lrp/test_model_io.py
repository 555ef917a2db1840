"""select_output, call_model, token_ids_of and padding_mask_of."""

from collections import OrderedDict, namedtuple

import pytest
import torch
import torch.nn as nn

from lrp_lightning._model_io import call_model, padding_mask_of, select_output, token_ids_of


class _Output:
    def __init__(self, logits):
        self.logits = logits
        self.hidden = None


def test_select_output_default_kinds():
    scores = torch.arange(6.0).reshape(2, 3)
    assert select_output(scores) is scores
    assert select_output({"logits": scores, "loss": torch.tensor(1.0)}) is scores
    assert select_output(OrderedDict(logits=scores)) is scores  # ModelOutput is an OrderedDict
    assert select_output(_Output(scores)) is scores


def test_select_output_by_key_index_callable():
    scores = torch.ones(2, 3)
    other = torch.zeros(2, 5)
    assert select_output({"a": other, "b": scores}, "b") is scores
    assert select_output((other, scores), 1) is scores
    assert select_output((other, scores), -2) is other
    assert select_output(_Output(scores), "logits") is scores
    Pair = namedtuple("Pair", "x y")
    assert select_output(Pair(other, scores), "y") is scores
    assert select_output((other, scores), lambda raw: raw[1] * 2).sum() == 12


def test_select_output_errors_list_what_the_output_holds():
    with pytest.raises(TypeError, match=r"keys \['loss', 'hidden'\].*pass output="):
        select_output({"loss": torch.tensor(0.0), "hidden": torch.ones(2)})
    with pytest.raises(
        ValueError, match=r"output must be an index .* tuple of 2 items \[tensor\(2, 3\), tensor\(1,\)\]"
    ):
        select_output((torch.ones(2, 3), torch.ones(1)), 2)
    with pytest.raises(ValueError, match=r"output must be a key or attribute .*keys \['a'\], got 'logits'"):
        select_output({"a": torch.ones(1)}, "logits")
    with pytest.raises(ValueError, match="output must be None, a key"):
        select_output(torch.ones(1), 1.5)
    with pytest.raises(ValueError, match="it gave list"):
        select_output({"a": [1]}, "a", owner="LRPCallback")


class _Keywords(nn.Module):
    def forward(self, input_ids, attention_mask=None):
        return input_ids.float() * (1 if attention_mask is None else attention_mask)


class _VarKeywords(nn.Module):
    def forward(self, **kwargs):
        return sorted(kwargs)


def test_call_model_tensor_and_mapping():
    ids = torch.tensor([[1, 2, 3]])
    mask = torch.tensor([[1, 1, 0]])
    model = _Keywords()
    assert torch.equal(call_model(model, ids), ids.float())
    batch = {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([1])}
    assert torch.equal(call_model(model, batch), torch.tensor([[1.0, 2.0, 0.0]]))
    assert call_model(_VarKeywords(), batch) == ["attention_mask", "input_ids", "labels"]
    with pytest.raises(TypeError, match=r"accepts none of the batch's keys \['x'\]"):
        call_model(model, {"x": ids})


def test_token_ids_and_padding_mask():
    ids = torch.tensor([[4, 5]])
    mask = torch.tensor([[1, 0]])
    assert token_ids_of(ids) is ids
    assert token_ids_of({"input_ids": ids, "attention_mask": mask}) is ids
    assert token_ids_of(torch.ones(1, 2)) is None
    assert token_ids_of(torch.ones(1, 2, dtype=torch.bool)) is None
    assert token_ids_of({"pixel_values": torch.ones(1, 3)}) is None
    assert padding_mask_of({"input_ids": ids, "attention_mask": mask}) is mask
    assert padding_mask_of(ids) is None
