"""The data modules' argument checks: integers (numpy ones too, never bools), flags, loader arguments."""

from __future__ import annotations

import numpy as np
import pytest

from lmix.data.checks import check_flag, check_index, check_loader_args
from lmix.errors import LmixTypeError, LmixValueError


def test_check_index():
    assert check_index(3, name="n", low=0) == 3
    value = check_index(np.int64(2), name="n", low=0, high=2)
    assert value == 2 and type(value) is int
    for bad in (True, 1.0, "1", -1):
        with pytest.raises(LmixValueError, match=r"n must be an integer >= 0, got"):
            check_index(bad, name="n", low=0)
    with pytest.raises(LmixValueError, match=r"rank must be an integer in \[0, 1\], got 2"):
        check_index(2, name="rank", low=0, high=1)


def test_check_flag():
    check_flag(True, name="train")
    check_flag(None, name="flip", optional=True)
    with pytest.raises(LmixTypeError, match="train must be True or False, got None"):
        check_flag(None, name="train")
    with pytest.raises(LmixTypeError, match="flip must be True, False or None, got 1"):
        check_flag(1, name="flip", optional=True)


def test_check_loader_args():
    got = check_loader_args(batch_size=np.int32(8), seed=np.int64(5), rank=1, world_size=2, train=False)
    assert got == (8, 5, 1, 2) and all(type(v) is int for v in got)  # seeds feed Python-int arithmetic
    with pytest.raises(LmixTypeError, match="seed must be an integer, got True"):
        check_loader_args(batch_size=8, seed=True, rank=0, world_size=1, train=True)
    with pytest.raises(LmixTypeError, match="train must be True or False"):
        check_loader_args(batch_size=8, seed=0, rank=0, world_size=1, train=1)
