"""The package's one JSON conversion (lrp_lightning._json.to_json) and the policies its callers choose."""

from __future__ import annotations

import datetime
import functools
import json
import math
from decimal import Decimal

import numpy as np
import pytest
import torch

from lrp_lightning._json import to_json
from lrp_lightning._validation import InvalidArgumentError


def test_plain_values_pass_and_containers_are_converted_recursively():
    value = {"a": (1, 2.5, "x", None, True), 3: [np.int64(4), {"b": np.float32(0.5)}], "c": np.bool_(True)}
    result = to_json(value)
    assert result == {"a": [1, 2.5, "x", None, True], "3": [4, {"b": 0.5}], "c": True}
    assert type(result["3"][0]) is int and type(result["c"]) is bool
    assert json.loads(json.dumps(result)) == result


@pytest.mark.parametrize(
    ("nonfinite", "expected"),
    [("keep", None), ("text", ["nan", "inf", "-inf", 1.5]), ("null", [None, None, None, 1.5])],
)
def test_nonfinite_floats_are_kept_written_as_text_or_null(nonfinite, expected):
    values = [math.nan, np.float64("inf"), -math.inf, 1.5]
    result = to_json(values, nonfinite=nonfinite)
    if expected is None:
        assert math.isnan(result[0]) and result[1:] == [math.inf, -math.inf, 1.5]
    else:
        assert result == expected
        json.dumps(result, allow_nan=False)  # strict JSON


def test_arrays_and_tensors_become_lists_or_their_shape_above_the_limit():
    assert to_json(np.arange(4).reshape(2, 2)) == [[0, 1], [2, 3]]
    assert to_json(torch.tensor([0.5, float("nan")]), nonfinite="text") == [0.5, "nan"]
    assert to_json(np.zeros((4, 4)), max_array_size=16) == [[0.0] * 4] * 4
    assert to_json(np.zeros((4, 5)), max_array_size=16) == "array[4, 5]"
    assert to_json(torch.zeros(2, 3, 3), max_array_size=16) == "array[2, 3, 3]"


def test_values_without_a_json_form_raise_or_go_to_default():
    with pytest.raises(TypeError, match="object <object .*> has no JSON form"):
        to_json({"x": [object()]})
    day = datetime.date(2024, 5, 1)
    assert to_json([day, Decimal("1.5")], default=str) == ["2024-05-01", "1.5"]
    assert to_json({"fn": len}, default=lambda item: item.__name__) == {"fn": "len"}


def test_nonfinite_must_be_a_known_policy():
    with pytest.raises(InvalidArgumentError, match=r"to_json: nonfinite must be one of \['keep', 'text', 'null'\]"):
        to_json(1.0, nonfinite="none")


def test_the_manifest_policy_of_the_callbacks():
    from lrp_lightning.callbacks._config import jsonable

    described = jsonable({"eps": float("inf"), "weights": torch.ones(20), "target": [len, functools.partial(len)]})
    assert described == {"eps": "inf", "weights": "array[20]", "target": ["builtins.len", "functools.partial"]}


def test_an_analysis_step_config_is_plain_json():
    from lrp_lightning.analysis import Clusterings, Preprocess

    config = Preprocess(pool_size=(np.int64(8), 4)).get_config()
    assert config == {"step": "Preprocess", "params": {"sign": "signed", "pool_size": [8, 4], "normalize": "l2"}}
    assert type(config["params"]["pool_size"][0]) is int
    clusterings = Clusterings(k_range=(2, 3), methods=("kmeans",))
    assert clusterings.get_config()["params"]["k_range"] == [2, 3]
