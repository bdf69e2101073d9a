"""tests/background.py's `each`: one failing item of a shared background job fails only its own test."""

import background
import pytest


def test_each_keeps_an_items_error_for_its_test_and_runs_the_rest():
    ran = []

    def step(item):
        ran.append(item)
        if item == "b":
            raise ValueError("b failed")
        return item.upper()

    outcomes = background.each(["a", "b", "c"], step)
    assert ran == ["a", "b", "c"]
    assert outcomes["a"] == "A" and outcomes["c"] == "C"
    with pytest.raises(ValueError, match="b failed"):
        outcomes["b"]
    with pytest.raises(KeyError):
        outcomes["d"]
