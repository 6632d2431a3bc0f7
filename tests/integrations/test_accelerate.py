"""The README's accelerate pattern in real accelerate runs on 2 CPU processes.

The test writes the README's accelerate block to a file and runs this file as a script, which
starts 2 processes with accelerate's ``notebook_launcher`` and ``ACCELERATE_USE_CPU=true`` (what
``accelerate launch --cpu`` sets; without MPI, ``accelerate launch --cpu --num_processes 2``
starts one process). Each process runs the README's block (``Accelerator()``, the mixer,
``register_for_checkpointing``) and trains a small model three times: 2 epochs without a stop,
1 epoch then ``save_state``, and ``load_state`` then epoch 2; then the same with the mixer as a
submodule of the prepared model instead of registered. Each process records the partners, lam
and masks of every batch, and the final weights.

The loader does not shuffle: accelerate's ``load_state`` does not restore the order of a
shuffled loader by default (its ``use_seedable_sampler`` does), which is not the mixer's part.
"""

from __future__ import annotations

import os
import runpy
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lmix

RUNS = ("full", "first", "resumed")
PLACES = ("registered", "in-model")
BATCHES_PER_EPOCH = 4  # per process: 32 samples, 2 processes, batches of 4


class Net(torch.nn.Module):
    """A small classifier (a module whose forward does not run every submodule, as a mixer's holder)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


def train(folder: Path, run: str, place: str) -> None:
    """One run in one process; its records go to <place>-<run>-rank<r>.pt."""
    from accelerate import Accelerator

    torch.manual_seed(1 if run == "resumed" else 0)  # resumed: the state must bring the weights
    model = Net()
    if place == "registered":
        ns = runpy.run_path(str(folder / "readme_accelerate.py"))  # a new Accelerator and mixer
        accelerator, mixer = ns["accelerator"], ns["mixer"]
    else:  # not registered: the model's state holds the mixer's
        accelerator = Accelerator()
        model.mixer = lmix.create_mixer("lmix", seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.rand(32, 3, 8, 8, generator=gen), torch.arange(32) % 4)
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    if place == "in-model":
        mixer = accelerator.unwrap_model(model).mixer
    state = folder / f"{place}-state"
    if run == "resumed":
        accelerator.load_state(state)
    drawn = []
    for epoch in {"full": (0, 1), "first": (0,), "resumed": (1,)}[run]:
        for images, labels in loader:
            batch = mixer(images, labels)
            drawn.append({"epoch": epoch, "perm": batch.params.perm, "lam": batch.lam, "mask": batch.params.mask})
            loss = lmix.mixed_cross_entropy(model(batch.images), batch)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
    if run == "first":
        accelerator.save_state(state)
    record = {
        "num_processes": accelerator.num_processes,
        "drawn": drawn,
        "weights": {k: v.detach().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()},
    }
    torch.save(record, folder / f"{place}-{run}-rank{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()


def train_all(folder: Path) -> None:
    for place in PLACES:
        for run in RUNS:
            train(folder, run, place)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accelerate_block() -> str:
    from tests.integrations.test_docs_examples import code_blocks, readme_section

    blocks = [code for _, code in code_blocks(readme_section()) if "from accelerate" in code]
    assert len(blocks) == 1, "the README has one accelerate example"
    return blocks[0]


def launch(folder: Path) -> None:
    """Run this file as a script on the README's block, with accelerate's CPU setting."""
    (folder / "readme_accelerate.py").write_text(accelerate_block())
    drop = {"LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}
    env = {k: v for k, v in os.environ.items() if k not in drop} | {"ACCELERATE_USE_CPU": "true"}
    proc = subprocess.run(
        [sys.executable, __file__, str(folder)], cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[dict, Path]:
    pytest.importorskip("accelerate")
    from tests.run_once import once_per_run  # here: this file also runs as a script

    folder = once_per_run(tmp_path_factory, "accelerate-2-processes", launch)
    records = {
        (place, run, r): torch.load(folder / f"{place}-{run}-rank{r}.pt", weights_only=True)
        for place in PLACES
        for run in RUNS
        for r in (0, 1)
    }
    return records, folder


def same_draws(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in ("perm", "lam", "mask"))


@pytest.mark.slow
@pytest.mark.parametrize("place", PLACES)
def test_processes_draw_different_masks(runs, place):
    records, _ = runs
    assert {rec["num_processes"] for rec in records.values()} == {2}
    full0, full1 = records[place, "full", 0]["drawn"], records[place, "full", 1]["drawn"]
    assert len(full0) == len(full1) == 2 * BATCHES_PER_EPOCH
    assert not any(torch.equal(a["mask"], b["mask"]) for a, b in zip(full0, full1))


@pytest.mark.slow
@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("rank", [0, 1])
def test_load_state_resumes_the_masks_and_weights_exactly(runs, place, rank):
    records, _ = runs
    full = records[place, "full", rank]["drawn"]
    assert same_draws(records[place, "first", rank]["drawn"], full[:BATCHES_PER_EPOCH])
    assert same_draws(records[place, "resumed", rank]["drawn"], full[BATCHES_PER_EPOCH:])
    final, resumed_final = records[place, "full", rank]["weights"], records[place, "resumed", rank]["weights"]
    assert final.keys() == resumed_final.keys()
    assert all(torch.equal(final[k], resumed_final[k]) for k in final)


@pytest.mark.slow
def test_save_state_writes_the_main_process_mixer_state_once(runs):
    """accelerate saves registered objects on the main process only; every process loads that file."""
    _, folder = runs
    registered = folder / "registered-state"
    assert sorted(p.name for p in registered.glob("custom_checkpoint_*.pkl")) == ["custom_checkpoint_0.pkl"]
    assert sorted(p.name for p in registered.glob("random_states_*.pkl")) == [
        "random_states_0.pkl",
        "random_states_1.pkl",
    ]
    # In the model (safetensors), the mixer's state is a tensor entry.
    from safetensors.torch import load_file

    assert load_file(folder / "in-model-state" / "model.safetensors")["mixer._extra_state"].dtype == torch.uint8


if __name__ == "__main__":
    from accelerate import notebook_launcher

    notebook_launcher(train_all, args=(Path(sys.argv[1]),), num_processes=2, use_port=str(free_port()))
