"""The divergence rule shared by the trainer and the record readers."""

import math

import pytest

from lmix.experiments.divergence import LOSS_FACTOR, loss_bound, loss_problem


@pytest.mark.parametrize("num_classes", [1, 2, 3, 10, 100, 200])
def test_bound_is_a_multiple_of_chance_loss(num_classes):
    assert loss_bound(num_classes) == pytest.approx(LOSS_FACTOR * max(math.log(max(num_classes, 2)), 1.0))


@pytest.mark.parametrize("key", ["train_loss", "test_loss"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 8.8e10, 23.1])
def test_losses_past_the_bound_or_not_finite_are_named(key, value):
    problem = loss_problem({"epoch": 3, key: value}, 10)
    assert problem is not None and problem.startswith(key)
    assert "\n" not in problem


@pytest.mark.parametrize(
    "row",
    [
        {},
        {"train_loss": 2.3, "test_loss": 2.48},
        {"train_loss": "abc"},
        {"test_loss": None},
        {"train_loss": True},
        {"train_loss": 0.0},
    ],
)
def test_ordinary_or_unjudged_rows_pass(row):
    assert loss_problem(row, 10) is None


def test_two_classes_use_a_floor_of_one():
    assert loss_problem({"test_loss": 9.9}, 2) is None
    assert "x 1)" in loss_problem({"test_loss": 10.1}, 2)
