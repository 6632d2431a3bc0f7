"""A mixer inside a torch.distributed process group, and its state inside a model's state dict.

The group tests run two CPU processes on the gloo backend, once per test process (one fixture
runs every scenario on both ranks and returns what each rank drew); the checks then compare the
ranks with each other and with what one process without a group draws.
"""

from __future__ import annotations

import copy
import datetime
import multiprocessing
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, default_collate

import lmix
from tests.run_once import once_per_run

NAMES = ["lmix", "mixup", "lmix+mixup"]
SEED = 5
DRAWS = 4
START = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """The same (6, 2, 8, 8) images and labels in every process."""
    gen = torch.Generator().manual_seed(0)
    return torch.rand(6, 2, 8, 8, generator=gen), torch.arange(6)


def draws(mixer: lmix.Mixer, n: int = DRAWS) -> list[torch.Tensor]:
    images, labels = batch()
    return [mixer(images, labels).images for _ in range(n)]


def model_with(mixer: lmix.Mixer) -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 8 * 8, 3))
    model.mixer = mixer
    return model


class MixCollate:
    """A collate function that mixes (a class, so that spawn-started workers can unpickle it)."""

    def __init__(self, mixer: lmix.Mixer) -> None:
        self.mixer = mixer

    def __call__(self, samples: list) -> torch.Tensor:
        return self.mixer(*default_collate(samples)).lam


def loader_lams(context: str, workers: int) -> list[torch.Tensor]:
    """Every batch's lam from a DataLoader whose workers mix, with the same loader seed on every rank."""
    data = TensorDataset(torch.rand(8, 1, 4, 4), torch.arange(8))
    loader = DataLoader(
        data,
        batch_size=2,
        num_workers=workers,
        collate_fn=MixCollate(lmix.create_mixer("lmix", seed=SEED)),
        generator=torch.Generator().manual_seed(1),
        multiprocessing_context=context,
    )
    return list(loader)


def rank_main(rank: int, folder: Path) -> None:
    """Every scenario on one rank of a 2-process gloo group; what it drew goes to rank<r>.pt."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{folder / 'store'}",
        rank=rank,
        world_size=2,
        timeout=datetime.timedelta(seconds=120),
    )
    out: dict[str, object] = {}
    for name in NAMES:
        out[f"{name}/stream"] = draws(lmix.create_mixer(name, seed=SEED))
        out[f"{name}/again"] = draws(lmix.create_mixer(name, seed=SEED))
        out[f"{name}/same-everywhere"] = draws(lmix.create_mixer(name, seed=SEED).per_rank_streams(False))
        out[f"{name}/fork"] = draws(lmix.create_mixer(name, seed=SEED).fork(rank))
        # Stop after 2 draws; rank 0 alone writes the state (as Lightning and accelerate do);
        # every rank resumes from it.
        model, mixer = model_with(lmix.create_mixer(name, seed=SEED)), lmix.create_mixer(name, seed=SEED)
        draws(model.mixer, 2)
        draws(mixer, 2)
        if rank == 0:
            torch.save(model.state_dict(), folder / f"{name}-model.pt")
            torch.save(mixer.state_dict(), folder / f"{name}-mixer.pt")
        dist.barrier()
        resumed = model_with(lmix.create_mixer(name, seed=SEED))
        resumed.load_state_dict(torch.load(folder / f"{name}-model.pt", weights_only=True))
        out[f"{name}/resumed-model"] = draws(resumed.mixer, DRAWS - 2)
        resumed = lmix.create_mixer(name, seed=SEED)
        resumed.load_state_dict(torch.load(folder / f"{name}-mixer.pt", weights_only=True))
        out[f"{name}/resumed-mixer"] = draws(resumed, DRAWS - 2)
    out["workers/fork"] = loader_lams("fork", 2) if START == "fork" else None
    out["workers/fork-again"] = loader_lams("fork", 2) if START == "fork" else None
    out["workers/spawn"] = loader_lams("spawn", 1)
    torch.save(out, folder / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


def start_ranks(folder: Path) -> None:
    mp.start_processes(rank_main, args=(folder,), nprocs=2, start_method=START)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    folder = once_per_run(tmp_path_factory, "gloo-group", start_ranks)
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(2)]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def differ_everywhere(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and not any(torch.equal(x, y) for x, y in zip(a, b))


# -- inside a process group ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_ranks_draw_their_own_reproducible_streams(ranks, name):
    r0, r1 = ranks
    assert differ_everywhere(r0[f"{name}/stream"], r1[f"{name}/stream"])
    for r in ranks:
        assert same(r[f"{name}/again"], r[f"{name}/stream"])
        # Consecutive draws on one rank differ too (the counter moves on).
        assert differ_everywhere(r[f"{name}/stream"][:-1], r[f"{name}/stream"][1:])


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("form", ["model", "mixer"])
def test_rank0_state_resumes_every_rank_exactly(ranks, name, form):
    for r in ranks:
        assert same(r[f"{name}/resumed-{form}"], r[f"{name}/stream"][2:])


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_per_rank_streams_off_draws_the_same_on_every_rank(ranks, name):
    alone = draws(lmix.create_mixer(name, seed=SEED))  # this process has no group
    for r in ranks:
        assert same(r[f"{name}/same-everywhere"], alone)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_a_forked_mixer_keeps_its_stream_in_a_group(ranks, name):
    for rank, r in enumerate(ranks):
        assert same(r[f"{name}/fork"], draws(lmix.create_mixer(name, seed=SEED).fork(rank)))
    assert differ_everywhere(ranks[0][f"{name}/fork"], ranks[1][f"{name}/fork"])


@pytest.mark.slow
@pytest.mark.skipif(START != "fork", reason="needs the fork start method")
def test_dataloader_workers_draw_per_rank_streams(ranks):
    r0, r1 = ranks
    assert differ_everywhere(r0["workers/fork"], r1["workers/fork"])
    for r in ranks:
        assert same(r["workers/fork-again"], r["workers/fork"])


@pytest.mark.slow
def test_spawned_dataloader_workers_draw_per_rank_streams(ranks):
    # A spawned worker is outside the group: the mixer carries its rank there.
    r0, r1 = ranks
    assert differ_everywhere(r0["workers/spawn"], r1["workers/spawn"])


# -- a mixer's state in a model's state dict ---------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_a_mixer_in_a_model_is_in_its_state_dict_and_round_trips_through_torch_save(tmp_path, name):
    model = model_with(lmix.create_mixer(name, seed=SEED))
    draws(model.mixer, 2)
    state = model.state_dict()
    expected = {"mixer._extra_state"} | (
        {"mixer.mixers.0._extra_state", "mixer.mixers.1._extra_state"} if "+" in name else set()
    )
    assert {k for k in state if "mixer" in k} == expected
    torch.save(state, tmp_path / "model.pt")
    rest = draws(model.mixer, 2)
    fresh = model_with(lmix.create_mixer(name, seed=SEED + 1))
    fresh.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    assert fresh.mixer.seed == SEED
    assert same(draws(fresh.mixer, 2), rest)


def test_a_model_state_dict_with_a_mixer_holds_tensors_only(tmp_path):
    """safetensors (accelerate's save_state, save_pretrained) stores tensors only."""
    safetensors = pytest.importorskip("safetensors.torch")
    model = model_with(lmix.create_mixer("lmix+mixup", seed=SEED))
    draws(model.mixer, 1)
    assert all(isinstance(v, torch.Tensor) for v in model.state_dict().values())
    safetensors.save_file(model.state_dict(), tmp_path / "model.safetensors")
    rest = draws(model.mixer, 2)
    fresh = model_with(lmix.create_mixer("lmix+mixup", seed=0))
    fresh.load_state_dict(safetensors.load_file(tmp_path / "model.safetensors"))
    assert same(draws(fresh.mixer, 2), rest)


def test_a_model_state_with_the_mixer_state_as_a_dict_loads():
    """The form nn.Module gives get_extra_state() by default: a dict in the model's state dict."""
    model = model_with(lmix.create_mixer("lmix+mixup", seed=SEED))
    draws(model.mixer, 1)
    state = model.state_dict()
    for key in [k for k in state if k.endswith("_extra_state")]:
        submodule = model.get_submodule(key.removesuffix("._extra_state"))
        state[key] = submodule.get_extra_state()
    fresh = model_with(lmix.create_mixer("lmix+mixup", seed=0))
    fresh.load_state_dict(state)
    assert same(draws(fresh.mixer, 2), draws(model.mixer, 2))


def test_a_model_without_the_mixer_state_fails_a_strict_load():
    model = model_with(lmix.create_mixer("lmix", seed=SEED))
    state = {k: v for k, v in model.state_dict().items() if "mixer" not in k}
    with pytest.raises(RuntimeError, match=r"mixer\._extra_state"):
        model.load_state_dict(state)


def test_device_and_dtype_moves_keep_the_generators():
    model = model_with(lmix.create_mixer("lmix+mixup", seed=SEED))
    draws(model.mixer, 1)
    twin = copy.deepcopy(model)
    before = {id(g) for m in model.mixer._tree() for g in m._generators.values()}
    model.to(torch.float64)
    model.to("cpu")
    model.double().float()
    if torch.cuda.is_available():
        model.cuda()
    assert {id(g) for m in model.mixer._tree() for g in m._generators.values()} == before
    assert same(draws(model.mixer, 2), draws(twin.mixer, 2))


# -- checkpoints lmix 0.2 wrote (mixer.state_dict(): seed and generators, no draws) -----------------


def test_an_old_mixer_state_loads():
    gen = torch.Generator().manual_seed(11)
    torch.rand(3, generator=gen)  # a stream already under way
    old = {"seed": 7, "generators": {"cpu": gen.get_state()}}
    mixer = lmix.create_mixer("lmix", seed=0)
    mixer.load_state_dict(old)
    images, labels = batch()
    expected = lmix.create_mixer("lmix", seed=0)(images, labels, generator=gen).images
    assert mixer.seed == 7 and mixer.draws == 0
    assert torch.equal(mixer(images, labels).images, expected)


def test_an_old_choice_state_loads_from_a_file(tmp_path):
    """MixChoice 0.2: its own seed and generators, ``calls`` and its components under ``mixers``."""
    component_gen = torch.Generator().manual_seed(21)
    old = {
        "seed": 3,
        "generators": {"cpu": torch.Generator().manual_seed(20).get_state()},
        "calls": 3,
        "mixers": [
            {"seed": 4, "generators": {}},
            {"seed": 5, "generators": {"cpu": component_gen.get_state()}},
        ],
    }
    torch.save(old, tmp_path / "mixer.pt")
    choice = lmix.create_mixer("lmix+mixup", seed=0, schedule="alternate")
    choice.load_state_dict(torch.load(tmp_path / "mixer.pt", weights_only=True))
    assert choice.calls == 3 and [m.seed for m in choice._tree()] == [3, 4, 5]
    images, labels = batch()
    # Call 4 of an alternating choice is the second component's, drawing from its restored stream.
    expected = lmix.create_mixer("mixup", seed=0)(images, labels, generator=component_gen)
    out = choice(images, labels)
    assert torch.equal(out.images, expected.images) and torch.equal(out.lam, expected.lam)
