"""Shared fixtures: devices and dtypes to run the mixing and model tests on."""

from __future__ import annotations

import os

import pytest
import torch

# Small tensor ops are much slower with several intra-op threads on the CI's 2 cores.
torch.set_num_threads(int(os.environ.get("LMIX_TEST_THREADS", "1")))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(params=[torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
def dtype(request) -> torch.dtype:
    return request.param
