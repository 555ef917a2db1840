"""The package's argument checks (lrp_lightning._validation): what passes, what it becomes, the message."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

from lrp_lightning._validation import (
    InvalidArgumentError,
    argument_error,
    check_bool,
    check_callable,
    check_choice,
    check_float,
    check_int,
    check_int_pair,
    check_path,
    check_random_state,
    check_subset,
    check_type,
    describe,
)

# The one message style: "<owner>: <name> must be <what to pass>[ (<note>)], got <what was given>".
STYLE = re.compile(r"^(\w[\w.]*: )?[\w\[\]]+ must be .+, got .+$", re.S)


def message(check, *args, **kwargs) -> str:
    with pytest.raises(InvalidArgumentError) as info:
        check(*args, **kwargs)
    text = str(info.value)
    assert STYLE.match(text), text
    return text


def test_the_error_is_both_a_value_error_and_a_type_error():
    # callers written against the earlier ValueError or TypeError keep catching it
    assert issubclass(InvalidArgumentError, ValueError) and issubclass(InvalidArgumentError, TypeError)
    error = argument_error("Owner", "size", "an int >= 1", -3, note="e.g. 4")
    assert str(error) == "Owner: size must be an int >= 1 (e.g. 4), got -3"
    assert str(argument_error(None, "size", "an int", "3")) == "size must be an int, got '3'"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (3, "3"),
        ("3", "'3'"),
        (None, "None"),
        (True, "True"),
        (2.5, "2.5"),
        ([1, 2], "list [1, 2]"),
        ((1, 2), "tuple (1, 2)"),
        ({"a": 1}, "dict {'a': 1}"),
    ],
)
def test_describe_shows_the_type_where_the_repr_does_not(value, shown):
    assert describe(value) == shown


def test_describe_shortens_long_values():
    shown = describe(list(range(100)))
    assert shown.startswith("list [0, 1, 2") and shown.endswith("...") and len(shown) == len("list ") + 80


def test_check_int_accepts_integers_in_range_and_returns_python_ints():
    assert check_int(5, "n", "Owner", 1) == 5
    value = check_int(np.int64(7), "n", "Owner", 0, 7)
    assert value == 7 and type(value) is int
    assert check_int(-4, "n", "Owner") == -4  # no bounds given, none applied


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0, "0"), (11, "11"), (True, "True"), (3.0, "3.0"), ("3", "'3'"), (None, "None"), (np.float32(2), "2.0")],
)
def test_check_int_refuses_out_of_range_bools_floats_and_text(value, shown):
    text = message(check_int, value, "count", "Owner", 1, 10, note="e.g. 4")
    assert text.startswith("Owner: count must be an int in [1, 10] (e.g. 4), got ")
    assert shown in text


def test_check_int_names_one_sided_bounds():
    assert message(check_int, -1, "seed", "Owner", 0) == "Owner: seed must be an int >= 0, got -1"
    assert message(check_int, 5, "depth", "Owner", None, 4) == "Owner: depth must be an int <= 4, got 5"
    assert message(check_int, 1.5, "n", None) == "n must be an int, got 1.5"


def test_check_float_accepts_reals_and_returns_floats():
    assert check_float(1, "tol", "Owner", 0.0, 1.0) == 1.0 and type(check_float(1, "tol", "Owner")) is float
    assert check_float(np.float32(0.25), "tol", "Owner", 0.0, 1.0) == 0.25
    assert check_float(0.0, "tol", "Owner", 0.0, 1.0) == 0.0  # bounds are inclusive
    assert check_float(math.inf, "contrast", "Owner", 1.0) == math.inf  # open upper bound


@pytest.mark.parametrize("value", [math.nan, np.float64("nan"), -0.5, 1.5, True, "0.5", None, 1j, np.complex64(1)])
def test_check_float_refuses_nan_out_of_range_and_non_reals(value):
    text = message(check_float, value, "share", "Tracking", 0.0, 1.0)
    assert text.startswith("Tracking: share must be a number in [0.0, 1.0], got ")


def test_check_float_names_one_sided_bounds():
    assert message(check_float, 0.5, "perplexity", "Embeddings", 1.0) == (
        "Embeddings: perplexity must be a number >= 1.0, got 0.5"
    )
    assert message(check_float, math.inf, "x", "Owner", None, 3.0) == "Owner: x must be a number <= 3.0, got inf"


def test_check_bool():
    assert check_bool(True, "verbose", "Owner") is True
    assert check_bool(np.bool_(False), "verbose", "Owner") is False
    for value, shown in [(1, "1"), (0, "0"), ("yes", "'yes'"), (None, "None")]:
        assert message(check_bool, value, "verbose", "Owner") == f"Owner: verbose must be True or False, got {shown}"


def test_check_choice_compares_by_value_but_never_takes_a_bool_for_a_number():
    assert check_choice("l2", "normalize", "Preprocess", ("l1", "l2")) == "l2"
    assert check_choice(2, "k", "Owner", (1, 2)) == 2
    assert message(check_choice, "L2", "normalize", "Preprocess", ("l1", "l2")) == (
        "Preprocess: normalize must be one of ['l1', 'l2'], got 'L2'"
    )
    assert "got True" in message(check_choice, True, "k", "Owner", (1, 2))
    # an array is compared elementwise by ==; it is refused, not a crash about its truth value
    assert "got ndarray array(['l1', 'l2']" in message(check_choice, np.array(["l1", "l2"]), "n", "O", ("l1", "l2"))


def test_check_subset_keeps_the_order_drops_repeats_and_takes_one_string_as_one_choice():
    methods = ("kmeans", "agglomerative", "dbscan")
    assert check_subset(["dbscan", "kmeans", "dbscan"], "methods", "Owner", methods) == ("dbscan", "kmeans")
    assert check_subset("kmeans", "methods", "Owner", methods) == ("kmeans",)
    assert check_subset((), "methods", "Owner", methods) == ()
    assert message(check_subset, (), "methods", "Clusterings", methods, allow_empty=False) == (
        "Clusterings: methods must be a non-empty subset of ['kmeans', 'agglomerative', 'dbscan'], got tuple ()"
    )
    assert message(check_subset, ["kmeans", "kmean"], "methods", "Owner", methods).endswith(
        "got list ['kmeans', 'kmean']"
    )
    assert "a subset of" in message(check_subset, 3, "methods", "Owner", methods)


def test_check_int_pair():
    assert check_int_pair((4, np.int32(6)), "size", "Owner", 1) == (4, 6)
    assert check_int_pair([2, 2], "k_range", "Owner", 2, expected="(smallest k, largest k)") == (2, 2)
    assert message(check_int_pair, (4, 0), "pool_size", "Preprocess", 1) == (
        "Preprocess: pool_size must be (height, width), two ints >= 1, got tuple (4, 0)"
    )
    for value in [(4,), (1, 2, 3), "ab", (2.0, 3.0), (True, 2), None, 5]:
        assert "must be (height, width), two ints >= 1" in message(check_int_pair, value, "size", "Owner", 1)
    assert "must be (smallest k, largest k), two ints >= 2, got list [1, 4]" in message(
        check_int_pair, [1, 4], "k_range", "Clusterings", 2, expected="(smallest k, largest k)"
    )


def test_check_random_state():
    assert check_random_state(np.int64(3), "Owner") == 3
    for value in (None, -1, 1.0, np.random.default_rng(0)):
        assert message(check_random_state, value, "KNNGraph").startswith(
            "KNNGraph: random_state must be an int >= 0 (results must be reproducible), got "
        )


def test_check_type():
    assert check_type({"a": 1}, "kwargs", "Owner", dict) == {"a": 1}
    assert check_type(None, "kwargs", "Owner", dict, allow_none=True) is None
    assert message(check_type, None, "kwargs", "Owner", dict) == "Owner: kwargs must be a dict, got None"
    assert message(check_type, 3, "x", "Owner", (list, tuple), allow_none=True) == (
        "Owner: x must be a list or a tuple or None, got 3"
    )
    assert message(
        check_type, "s", "step", "SpRAy", int, "a Preprocess", allow_none=True, note="e.g. Preprocess()"
    ) == ("SpRAy: step must be a Preprocess or None (e.g. Preprocess()), got 's'")


def test_check_callable():
    assert check_callable(len, "unpack_batch", "Owner") is len
    assert check_callable(None, "unpack_batch", "Owner", allow_none=True) is None
    assert message(check_callable, "x", "fn", "Owner", "a callable batch -> (inputs, labels)", allow_none=True) == (
        "Owner: fn must be a callable batch -> (inputs, labels) or None, got 'x'"
    )
    assert message(check_callable, None, "fn", "Owner") == "Owner: fn must be a callable, got None"


def test_check_path(tmp_path):
    assert check_path("runs", "dirpath", "Owner") == "runs"
    assert check_path(tmp_path, "dirpath", "Owner") == tmp_path and isinstance(tmp_path, os.PathLike)
    assert check_path(None, "dirpath", "Owner", allow_none=True) is None
    assert message(check_path, 5, "dirpath", "Owner", allow_none=True) == (
        "Owner: dirpath must be a path (str or os.PathLike) or None, got 5"
    )
    assert message(check_path, b"runs", "dirpath", "Owner") == (
        "Owner: dirpath must be a path (str or os.PathLike), got bytes b'runs'"
    )
    assert message(check_path, [Path("a")], "dirpath", "Owner").endswith("got list [PosixPath('a')]")


def test_the_checks_and_the_json_conversion_import_no_torch():
    # the store and the TensorBoard plugin use them, and must stay importable without torch
    import subprocess
    import sys

    code = (
        "import sys, lrp_lightning._validation, lrp_lightning._json; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
