"""The README's LightningModule in real Lightning runs: ``Trainer(strategy="ddp")`` on 2 CPU processes.

The test writes the README's Lightning block to a file and runs this file as a script, as a user
runs a training script; Lightning's ddp launcher starts rank 1 by running the script again. Each
rank fits the module three times: 2 epochs without a stop, 1 epoch that writes Lightning's
checkpoint, and a run resumed from that checkpoint to the end of epoch 2; each rank records the
partners, lam and masks of every training batch, and the final weights.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

RUNS = ("full", "first", "resumed")
BATCHES_PER_EPOCH = 4  # per rank: 32 samples, 2 ranks, batches of 4


def fit_three_times(folder: Path) -> None:
    """What every rank runs (as a script): the three fits, each rank's records to <run>-rank<r>.pt."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    sys.path.insert(0, str(folder))
    from readme_lightning import LitClassifier

    class Recorded(LitClassifier):
        """The README's module, recording what the mixer drew for every training batch."""

        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__(model)
            self.drawn: list[dict] = []

        def on_after_batch_transfer(self, batch, dataloader_idx):
            batch = super().on_after_batch_transfer(batch, dataloader_idx)
            if self.trainer.training:
                params = batch.params
                self.drawn.append(
                    {"epoch": self.current_epoch, "perm": params.perm, "lam": params.lam, "mask": params.mask}
                )
            return batch

    def module(init_seed: int) -> Recorded:
        torch.manual_seed(init_seed)
        return Recorded(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4)))

    gen = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.rand(32, 3, 8, 8, generator=gen), torch.arange(32) % 4)
    loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=True)
    common = dict(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    stop = ModelCheckpoint(dirpath=folder / "checkpoints", filename="stop")
    runs = {
        "full": (L.Trainer(max_epochs=2, enable_checkpointing=False, **common), module(0), None),
        "first": (L.Trainer(max_epochs=1, callbacks=[stop], **common), module(0), None),
        # Other initial weights: the checkpoint must bring the trained ones.
        "resumed": (
            L.Trainer(max_epochs=2, enable_checkpointing=False, **common),
            module(1),
            folder / "checkpoints" / "stop.ckpt",
        ),
    }
    for name, (trainer, lit, ckpt_path) in runs.items():
        trainer.fit(lit, loader, ckpt_path=ckpt_path)
        record = {
            "world_size": trainer.world_size,
            "drawn": lit.drawn,
            "weights": {k: v.detach().clone() for k, v in lit.model.state_dict().items()},
        }
        torch.save(record, folder / f"{name}-rank{trainer.global_rank}.pt")
        trainer.strategy.barrier()  # rank 0 exits only after rank 1 has written its records


def lightning_block() -> str:
    from tests.integrations.test_docs_examples import code_blocks, readme_section

    blocks = [code for _, code in code_blocks(readme_section()) if "import lightning" in code]
    assert len(blocks) == 1, "the README has one Lightning example"
    return blocks[0]


def launch(folder: Path) -> None:
    """Run this file as a script on the README's block, as a user runs a training script."""
    (folder / "readme_lightning.py").write_text(lightning_block())
    # A clean launch: no distributed settings inherited from whatever runs the tests.
    drop = {"LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "PL_GLOBAL_SEED"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    proc = subprocess.run(
        [sys.executable, __file__, str(folder)], cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[dict, Path]:
    pytest.importorskip("lightning")
    from tests.run_once import once_per_run  # here: this file also runs as a script

    folder = once_per_run(tmp_path_factory, "lightning-ddp", launch)
    records = {(run, r): torch.load(folder / f"{run}-rank{r}.pt", weights_only=True) for run in RUNS for r in (0, 1)}
    return records, folder


def drawn_in(records: dict, run: str, rank: int, epoch: int) -> list[dict]:
    return [d for d in records[run, rank]["drawn"] if d["epoch"] == epoch]


def same_draws(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in ("perm", "lam", "mask"))


@pytest.mark.slow
def test_ddp_ranks_draw_different_masks(runs):
    records, _ = runs
    assert {rec["world_size"] for rec in records.values()} == {2}
    full0, full1 = records["full", 0]["drawn"], records["full", 1]["drawn"]
    assert len(full0) == len(full1) == 2 * BATCHES_PER_EPOCH
    assert not any(torch.equal(a["mask"], b["mask"]) for a, b in zip(full0, full1))


@pytest.mark.slow
@pytest.mark.parametrize("rank", [0, 1])
def test_resumed_run_draws_the_uninterrupted_masks_and_reaches_the_same_weights(runs, rank):
    records, _ = runs
    assert same_draws(drawn_in(records, "first", rank, 0), drawn_in(records, "full", rank, 0))
    resumed = records["resumed", rank]["drawn"]
    assert [d["epoch"] for d in resumed] == [1] * BATCHES_PER_EPOCH  # epoch 1 was not run again
    assert same_draws(resumed, drawn_in(records, "full", rank, 1))
    final, resumed_final = records["full", rank]["weights"], records["resumed", rank]["weights"]
    assert final.keys() == resumed_final.keys()
    assert all(torch.equal(final[k], resumed_final[k]) for k in final)


@pytest.mark.slow
def test_lightning_checkpoint_holds_the_mixer_state(runs):
    import lmix

    _, folder = runs
    checkpoint = torch.load(folder / "checkpoints" / "stop.ckpt", weights_only=True)
    blob = checkpoint["state_dict"]["mixer._extra_state"]
    mixer = lmix.create_mixer("lmix", seed=1)
    mixer.load_state_dict({"_extra_state": blob})
    assert mixer.seed == 0 and mixer.draws == BATCHES_PER_EPOCH


if __name__ == "__main__":
    fit_three_times(Path(sys.argv[1]))
