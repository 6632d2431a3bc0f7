"""The trainer: data -> augment -> mixing -> model -> loss -> metrics, with checkpoints and resume.

Resume is bit-exact on CPU: a checkpoint after every epoch (``checkpoint_every``) holds the
model, optimiser, scheduler, grad scaler, every process's RNG states (torch, CUDA, the mixer's
generators) and the data order's state; the data order and augmentation of an epoch depend
only on (seed, epoch, rank). A run killed at any moment restarts from its last checkpoint and
replays the epochs after it exactly.

Failures (``lmix.experiments.train.failures``): a loss or weight that is not finite, or a mean
loss past :func:`lmix.experiments.divergence.loss_problem`'s bound (weights that exploded to
finite values), raises ``TrainingDiverged`` before the epoch's checkpoint is written and leaves
``failed.json`` (``"diverged": true``) in the run folder; SIGINT/SIGTERM end the run at the next
step boundary with ``TrainingInterrupted``; a second ``lmix train`` on the same folder is turned
away by a lock; a failed write raises ``lmix.experiments.io.WriteError`` and leaves the previous
files as they were; an image file a DataLoader worker cannot read stops the run with a
``RunError`` naming it, the last checkpoint kept.

What a call does with the run folder it is pointed at (a folder holding another run, by its
checkpoint's or its ``config.yaml``'s settings, or a ``config.yaml`` that cannot be used, is always
refused; the records are read with :mod:`lmix.experiments.records`, as ``lmix report`` and
``lmix sweep`` read them):

* ``checkpoint.pt`` of the last epoch and a ``summary.json``: nothing to do (the summary is
  returned), once the finished run's records read as the report reads them; a damaged one is
  refused, naming it, and a missing ``config.yaml`` or ``metrics.jsonl`` is written again from the
  checkpoint. Without the summary, it is written again from the checkpoint.
* ``checkpoint.pt`` of an earlier epoch: resumed, unless a ``summary.json`` says the run finished
  (the files disagree: refused).
* no checkpoint, a ``summary.json``: a finished run whose checkpoint is gone; refused, nothing
  to resume.
* no checkpoint, epochs in ``metrics.jsonl``: with its ``config.yaml``, trained again from epoch 0
  (a note says so; on the CPU it records the same numbers); without it, refused (whose epochs
  they are cannot be told).
* otherwise: a fresh run.

``restart=True`` (``lmix train --restart``) trains from epoch 0 whatever the folder holds of the
same run: ``summary.json``, ``failed.json``, ``fgsm.json``/``fgsm.png`` and ``checkpoint.pt`` are
removed first, ``config.yaml`` and ``metrics.jsonl`` rewritten.
"""

from __future__ import annotations

import contextlib
import errno
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import yaml

from lmix.errors import LmixValueError
from lmix.experiments.divergence import loss_problem
from lmix.experiments.io import (
    RunLock,
    WriteError,
    atomic_torch_save,
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    not_a_folder,
)
from lmix.experiments.metrics import evaluate
from lmix.experiments.train.checks import (
    CHECKPOINT_FORMAT,
    RunError,
    _box_sides,
    _check_sizes,
    autocast_dtype,
    build_model,
    check_input_kind,
    load_checkpoint,
)
from lmix.experiments.train.config import TrainConfig, identity_difference
from lmix.experiments.train.distributed import (
    DistEnv,
    all_gather_objects,
    all_reduce_sum,
    broadcast_object,
    setup_distributed,
    teardown_distributed,
)
from lmix.experiments.train.failures import (
    FAILED_JSON,
    StopOnSignal,
    TrainingDiverged,
    TrainingInterrupted,
    clear_failed,
    epochs_done,
    write_failed,
)
from lmix.experiments.train.mixer_config import ignored_mixer_settings, mixer_from_config, resolve_mixer_settings
from lmix.experiments.train.provenance import provenance
from lmix.experiments.train.step import CompiledStep, Step, eager_step, train_epoch
from lmix.mixing import Mixer

__all__ = [
    "train",
    "train_epoch",
    "RunError",
    "TrainingDiverged",
    "TrainingInterrupted",
    "resolve_device",
    "CHECKPOINT",
    "load_checkpoint",
    "check_input_kind",
]

CHECKPOINT = "checkpoint.pt"
SUMMARY_JSON = "summary.json"
# Records of a run's model that a restart replaces (config.yaml and metrics.jsonl are rewritten).
_RESTART_REMOVES = (SUMMARY_JSON, FAILED_JSON, "fgsm.json", "fgsm.png", CHECKPOINT)


# ---------------------------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------------------------
def resolve_device(name: str, env: DistEnv) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RunError(f"device {name!r} was asked for but CUDA is not available; use --device cpu")
        if name == "cuda":
            name = f"cuda:{env.local_rank}"
    return torch.device(name)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """Stepped once per iteration; milestones are given in epochs."""
    total = config.epochs * steps_per_epoch
    warm = config.warmup_epochs * steps_per_epoch
    sched_mod = torch.optim.lr_scheduler
    if config.schedule == "onecycle":
        return sched_mod.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total)
    if config.schedule == "cosine":
        main = sched_mod.CosineAnnealingLR(optimizer, T_max=max(1, total - warm))
    else:
        main = sched_mod.MultiStepLR(
            optimizer,
            milestones=[m * steps_per_epoch - warm for m in config.resolved_milestones()],
            gamma=config.lr_gamma,
        )
    if warm == 0:
        return main
    warmup = sched_mod.LinearLR(optimizer, start_factor=1.0 / warm, end_factor=1.0, total_iters=warm)
    return sched_mod.SequentialLR(optimizer, [warmup, main], milestones=[warm])


def default_out_dir(config: TrainConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.dataset}-{config.model}-{config.method}-seed{config.seed}-{stamp}"


def check_out_dir(out: Path, config: TrainConfig) -> dict[str, Any] | None:
    """The checkpoint to resume from, or None for a fresh run.

    ``config.yaml`` is read with the run records' reader (:func:`lmix.experiments.records.load_config`,
    as ``lmix report`` and ``lmix sweep`` read it), also beside a checkpoint.

    Raises:
        RunError: ``out`` holds another run (by its checkpoint or its ``config.yaml``; the line names
            the first settings that differ), a damaged checkpoint, or a ``config.yaml`` that cannot be used.
    """
    from lmix.experiments.records import RecordError, load_config

    ckpt = None
    ckpt_path = out / CHECKPOINT
    if ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        shown = identity_difference(ckpt["config"], config.to_dict(), limit=4)
        if shown:
            raise RunError(f"out dir {str(out)!r} holds a different run's checkpoint ({shown}); choose another --out")
    try:
        theirs = load_config(out)
    except RecordError as err:
        raise RunError(
            f"out dir {str(out)!r} has an unreadable record: {err.file}: {err.problem}; lmix train does not train "
            "over a run's records: repair that file or move it away, or choose another --out"
        ) from None
    if theirs is not None:
        shown = identity_difference(theirs, config.to_dict(), limit=4)
        if shown:
            raise RunError(
                f"out dir {str(out)!r} holds a different run (its config.yaml differs: {shown}); choose another --out"
            )
    return ckpt


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------
@dataclass
class _State:
    epoch: int = 0  # completed epochs
    best_acc: float = -1.0
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    train_images: int = 0


def _rng_snapshot(mixer: Mixer, loader: Any) -> dict[str, Any]:
    snap: dict[str, Any] = {"torch": torch.get_rng_state(), "mixer": mixer.state_dict()}
    if torch.cuda.is_available():
        snap["cuda"] = torch.cuda.get_rng_state_all()
    if hasattr(loader, "state_dict"):
        snap["loader"] = loader.state_dict()
    return snap


def _rng_restore(snap: dict[str, Any], mixer: Mixer, loader: Any) -> None:
    torch.set_rng_state(snap["torch"])
    if "cuda" in snap and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(snap["cuda"])
    mixer.load_state_dict(snap["mixer"])
    if "loader" in snap and hasattr(loader, "load_state_dict"):
        loader.load_state_dict(snap["loader"])


def train(config: TrainConfig, *, env: DistEnv | None = None, log=print, restart: bool = False) -> dict[str, Any]:
    """Train (or resume, or skip if finished) the run described by ``config``.

    The run folder ``config.out`` gets ``config.yaml``, ``metrics.jsonl`` (one line per
    epoch), ``checkpoint.pt`` and, when done, ``summary.json``. Calling it again on the same
    folder resumes from the last checkpoint (bit-identical on CPU) or returns the finished
    summary; a folder holding a different run is refused, and so is a finished run whose
    checkpoint is gone (the module docstring lists every case).

    Args:
        config: the run's settings (resolved and validated here).
        env: this process's place in a DDP job; default: read from torchrun's environment
            variables (a single process without them).
        log (Callable[[str], None]): where progress lines go (``print``; rank 0 only).
        restart: train from epoch 0 even where the folder holds this run's checkpoint or
            finished records (they are replaced; ``lmix train --restart``).

    Returns:
        The run's summary (also written to ``OUT/summary.json`` by rank 0): ``final_acc`` and
        ``best_acc`` in percent, ``best_epoch``, timings, ...

    Raises:
        RunError: a problem with the run folder or its checkpoint, another ``lmix train``
            holds the folder's lock, or an image file a worker met cannot be read (one line).
        ValueError: an invalid setting (also a box or a crop padding too large for the data set's samples).
        TrainingDiverged: the loss or the weights stopped being finite, or the loss passed
            :func:`lmix.experiments.divergence.loss_problem`'s bound (no summary; the last good
            checkpoint is kept; ``failed.json`` says why).
        TrainingInterrupted: SIGINT/SIGTERM (a ``KeyboardInterrupt``); the checkpoint is intact.
        lmix.experiments.io.WriteError: a file could not be written (the previous one is intact).
    """
    config.resolve().validate()
    env = env or DistEnv.from_env()
    device = resolve_device(config.device, env)
    if config.batch_size % env.world_size:
        raise LmixValueError(
            f"batch_size {config.batch_size} must be divisible by the number of processes ({env.world_size})"
        )
    check_input_kind(config)
    _check_folder_sizes(config)
    ignored = ignored_mixer_settings(config)
    # Checks the method and its settings before touching the disk; config.yaml then shows every
    # value the mixer is built with (settings the method does not take become None).
    resolve_mixer_settings(config)
    if env.is_main:
        _tensorboard_writer(config)  # a missing tensorboard package is said before any file is written
    if ignored and env.is_main:
        log(f"note: {', '.join(ignored)} not used by method {config.method!r}")
    setup_distributed(env, device)
    try:
        with StopOnSignal() as stop:
            summary = _train(config, env, device, log, stop, restart=bool(restart))
        if env.enabled:
            # Leave together: a rank that tears gloo down while rank 0 still writes its files can
            # abort ("terminate called without an active exception").
            torch.distributed.barrier()
        return summary
    finally:
        teardown_distributed()


@dataclass
class _Run:
    """Everything one training run holds between its phases."""

    config: TrainConfig
    env: DistEnv
    device: torch.device
    out: Path
    log: Any
    train_loader: Any
    test_loader: Any
    clean_train_loader: Any
    raw_model: nn.Module
    model: nn.Module  # raw_model, compiled and/or wrapped in DDP
    mixer: Mixer
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    memory_format: torch.memory_format
    step: Step
    num_classes: int
    state: _State = field(default_factory=_State)
    writer: Any = None
    bar: Any = None

    @property
    def autocast(self) -> Any:
        return _autocast(self.device, self.amp_dtype)


def _train(
    config: TrainConfig, env: DistEnv, device: torch.device, log, stop: StopOnSignal, *, restart: bool
) -> dict[str, Any]:
    out = Path(config.out) if config.out else default_out_dir(config)
    out = Path(broadcast_object(str(out), env))
    config.out = str(out)
    lock, created = _lock_out_dir(out, env)
    try:
        return _train_locked(config, env, device, log, stop, out, restart=restart)
    finally:
        if lock is not None:
            lock.release()
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only if the run failed before writing anything


def _lock_out_dir(out: Path, env: DistEnv) -> tuple[RunLock | None, bool]:
    """Rank 0 locks the run folder (creating it); every rank learns whether that worked.

    Returns:
        (the lock on rank 0, whether this call created the folder).
    """
    lock, created, busy, failed = None, False, None, None
    problem = not_a_folder(out, hint="give --out a new folder or a run folder") if env.is_main else None
    if env.is_main and problem is None:
        created = not out.exists()
        lock = RunLock(out)
        try:
            out.mkdir(parents=True, exist_ok=True)
            if not lock.acquire():
                busy = lock.holder()
                lock = None
        except OSError as err:  # read-only file system, no space for the lock file, no permission
            failed, lock = (err.errno, err.strerror or str(err)), None
            if created:
                with contextlib.suppress(OSError):
                    out.rmdir()
    busy, failed, problem = broadcast_object((busy, failed, problem), env)
    if problem is not None:
        raise RunError(problem)
    if failed is not None and failed[0] in (errno.EACCES, errno.EPERM):
        raise RunError(
            f"cannot create {str(out / RunLock.FILENAME)!r}: {failed[1]}; choose an --out folder you may write to"
        )
    if failed is not None:
        raise WriteError(out / RunLock.FILENAME, OSError(*failed))
    if busy is not None:
        raise RunError(
            f"out dir {str(out)!r} is in use by another lmix train or sweep job ({busy}); wait for it or choose another --out"
        )
    return lock, created


def _finished_summary(out: Path, ckpt: dict[str, Any]) -> dict[str, Any]:
    """The summary of a complete run whose ``summary.json`` is there, its records checked as ``lmix report``
    and ``lmix sweep`` check them (:func:`lmix.experiments.records.read_finished`); a missing
    ``config.yaml`` or ``metrics.jsonl`` is written again from the checkpoint once the others are checked.

    Raises:
        RunError: a record cannot be used (one line naming the file; nothing is written).
    """
    from lmix.experiments.records import RecordError, load_config, load_metrics, load_summary, read_finished

    try:
        if not ((out / "config.yaml").exists() and (out / "metrics.jsonl").exists()):
            for read in (load_summary, load_config, load_metrics):  # the files there, before one is written
                read(out)
            _restore_records(out, ckpt)
        return read_finished(out).summary
    except RecordError as err:
        raise RunError(
            f"out dir {str(out)!r} has an unreadable record: {err.file}: {err.problem}; lmix train does not train "
            f"over a finished run's records: repair that file or move it away (a missing {SUMMARY_JSON}, "
            "config.yaml or metrics.jsonl is written again from the checkpoint), pass --restart to train it again "
            "from epoch 0, or choose another --out"
        ) from None


def _start(out: Path, config: TrainConfig, env: DistEnv, log, *, restart: bool) -> tuple[Any, Any]:
    """``(checkpoint to resume from, summary of a complete run)``, each None where it does not apply,
    as the run folder calls for (the module docstring lists the cases).

    Rank 0 looks at the folder (and, restarting, removes the old records); the other ranks follow
    its decision and read the checkpoint it checked.

    Raises:
        RunError: the folder holds another run, or records a call must not replace (one line).
    """
    decision: tuple[str, Any] | None = None
    ckpt = None
    if env.is_main:
        try:
            kind, detail, ckpt = _decide_start(out, config, restart=restart)
            decision = (kind, detail)
        except RunError as err:
            decision = ("refused", str(err))
        except BaseException:
            broadcast_object(("failed", None), env)  # the other ranks stop too, instead of waiting
            raise
    kind, detail = broadcast_object(decision, env)
    if kind == "refused":
        raise RunError(detail)
    if kind == "failed":
        raise RunError(f"rank 0 could not prepare the run folder {str(out)!r}; its own error says why")
    if kind == "complete":
        return None, detail
    if kind == "fresh":
        if detail and env.is_main:
            log(detail)
        return None, None
    return (ckpt if ckpt is not None else load_checkpoint(out / CHECKPOINT)), None


def _decide_start(out: Path, config: TrainConfig, *, restart: bool) -> tuple[str, Any, dict[str, Any] | None]:
    """``(what, detail, checkpoint)``: "complete" (detail: the summary), "resume" (the checkpoint)
    or "fresh" (detail: a note for the log, or None); RunError where the folder must be left alone."""
    ckpt = check_out_dir(out, config)
    if restart:
        for name in _RESTART_REMOVES:
            with contextlib.suppress(FileNotFoundError):
                (out / name).unlink()
        return "fresh", None, None
    finished = (out / SUMMARY_JSON).exists()
    again = "pass --restart to train it again from epoch 0 (its records are replaced) or choose another --out"
    if ckpt is not None:
        done = int(ckpt["epoch"])
        if done >= config.epochs:
            if not finished:
                return "resume", None, ckpt  # summary.json is written again from the checkpoint
            return "complete", _finished_summary(out, ckpt), None
        if finished:
            raise RunError(
                f"out dir {str(out)!r} holds a {SUMMARY_JSON} but its {CHECKPOINT} is from epoch {done} of "
                f"{config.epochs}: the files disagree; {again}"
            )
        return "resume", None, ckpt
    if finished:
        raise RunError(
            f"out dir {str(out)!r} holds a finished run ({SUMMARY_JSON}) but no {CHECKPOINT} to resume; {again}"
        )
    rows = epochs_done(out)
    if rows and not (out / "config.yaml").exists():
        raise RunError(
            f"out dir {str(out)!r} holds {rows} epoch(s) in metrics.jsonl but no config.yaml, so whose they are is "
            "unknown; pass --restart to replace them or choose another --out"
        )
    if rows:
        note = f"note: no {CHECKPOINT} in {out}: training again from epoch 0 (the {rows} epoch(s) in metrics.jsonl are replaced)"
        return "fresh", note, None
    return "fresh", None, None


def _restore_records(out: Path, ckpt: dict[str, Any]) -> None:
    """Write a complete run's missing ``config.yaml`` or ``metrics.jsonl`` again from its checkpoint."""
    if not (out / "config.yaml").exists():
        atomic_write_text(out / "config.yaml", yaml.safe_dump(ckpt["config"], sort_keys=False))
    if not (out / "metrics.jsonl").exists():
        atomic_write_jsonl(out / "metrics.jsonl", ckpt["history"])


def _train_locked(
    config: TrainConfig, env: DistEnv, device: torch.device, log, stop: StopOnSignal, out: Path, *, restart: bool
) -> dict[str, Any]:
    from lmix.data.info import DataFileError

    t0 = time.perf_counter()
    resume, summary = _start(out, config, env, log, restart=restart)
    if summary is not None:
        if env.is_main:
            log(f"run in {out} is already complete: final_acc {summary['final_acc']:.2f}%")
        return summary
    saved_epoch = 0 if resume is None else int(resume["epoch"])
    epoch: int | None = None
    try:
        stop.check()
        run = _set_up(config, env, device, out, log)
        if resume is not None:
            _resume(run, resume)
        del resume  # the model's and optimiser's tensors now live in the run; free the copy
        stop.check()
        _start_outputs(run)
        try:
            for epoch in range(run.state.epoch, config.epochs):
                row = _train_one_epoch(run, epoch, stop)
                _check_diverged(run, epoch, row, saved_epoch)
                if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
                    row.update(_evaluate(run))
                    _check_diverged(run, epoch, row, saved_epoch)
                _record_epoch(run, epoch, row)
                if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs:
                    _write_checkpoint(run)
                    saved_epoch = epoch + 1
                else:
                    _write_metrics(run)
                _report_epoch(run, epoch, row)
                stop.check()
        finally:
            if run.bar is not None:
                run.bar.close()
            if run.writer is not None:
                run.writer.close()
    except TrainingInterrupted as err:
        raise TrainingInterrupted(err.signum, out=str(out), saved_epoch=saved_epoch) from None
    except TrainingDiverged as err:
        _record_divergence(err, config, env, time.perf_counter() - t0)
        raise
    except DataFileError as err:
        if epoch is None:
            raise  # reading the data into memory, before any training: nothing to keep
        kept = f"the checkpoint after epoch {saved_epoch} is kept" if saved_epoch else "no checkpoint was written yet"
        raise RunError(
            f"{err}; training stopped in epoch {epoch + 1}, {kept} in {out}: re-run the same command to go on"
        ) from None
    return _finish(run)


def _record_divergence(err: TrainingDiverged, config: TrainConfig, env: DistEnv, seconds: float) -> None:
    """Leave ``failed.json`` (``"diverged": true``, the reason) in the run folder (rank 0).

    Raises:
        TrainingDiverged: ``err`` saying also that ``failed.json`` could not be written.
    """
    if not env.is_main:
        return
    message = str(err).removeprefix("lmix train: ")
    try:
        write_failed(
            err.out,
            name=err.out,
            err=err,
            message=message,
            epochs=config.epochs,
            seconds=seconds,
            identity=config.to_dict(),
        )
    except OSError as write_err:
        raise TrainingDiverged(
            f"{err} (and {FAILED_JSON} could not be written: {write_err})",
            out=err.out,
            epoch=err.epoch,
            saved_epoch=err.saved_epoch,
        ) from None


def _set_up(config: TrainConfig, env: DistEnv, device: torch.device, out: Path, log) -> _Run:
    """Data, model, mixer, optimiser, schedule and precision of a fresh run."""
    train_loader, test_loader, info = _loaders(config, env, device)
    if getattr(info, "image_size", None) is not None:
        _check_sizes(config, tuple(int(s) for s in info.image_size))  # an ImageFolder's, known now
    clean_train_loader = _clean_train_loader(train_loader, config, info, env, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    raw_model, memory_format = _raw_model(config, info, device)
    # The same mixer on every rank: inside the process group each rank draws its own stream from it.
    mixer = mixer_from_config(config)
    optimizer = _sgd(raw_model, config, device)
    scheduler = build_scheduler(optimizer, config, len(train_loader))
    amp_dtype = autocast_dtype(config, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    model, step = _training_step(
        config, env, device, raw_model, mixer, amp_dtype=amp_dtype, memory_format=memory_format
    )
    if device.type == "cuda":
        # Hand the step its input as the model consumes it: channels_last, in the autocast dtype.
        train_loader = _TrainingInput(train_loader, dtype=amp_dtype or torch.float32, memory_format=memory_format)
    return _Run(
        config=config,
        env=env,
        device=device,
        out=out,
        log=log,
        train_loader=train_loader,
        test_loader=test_loader,
        clean_train_loader=clean_train_loader,
        raw_model=raw_model,
        model=model,
        mixer=mixer,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        amp_dtype=amp_dtype,
        memory_format=memory_format,
        step=step,
        num_classes=int(info.num_classes),
    )


def _loaders(config: TrainConfig, env: DistEnv, device: torch.device) -> tuple[Any, Any, Any]:
    """(training loader, test loader, data set info) of this rank, with the labels checked."""
    from lmix.data import build_loaders

    torch.manual_seed(config.seed)
    if config.download and env.enabled and not env.is_main:
        torch.distributed.barrier()  # rank 0 downloads first; the others then find the files
    train_loader, test_loader, info = build_loaders(
        config.dataset,
        root=config.data_root,
        download=config.download,
        batch_size=config.batch_size // env.world_size,
        device=device,
        seed=config.seed,
        train_subset=config.train_subset,
        rank=env.rank,
        world_size=env.world_size,
        in_memory=config.in_memory,
        svhn_extra=config.svhn_extra,
        test_batch_size=max(1, config.test_batch_size // env.world_size),
        augment=config.augment,
        crop_padding=config.crop_padding,
        flip=config.flip,
        num_workers=config.num_workers,
    )
    if config.download and env.enabled and env.is_main:
        torch.distributed.barrier()
    _check_labels(info.num_classes, train=train_loader, test=test_loader)
    if len(train_loader) == 0:
        raise LmixValueError(f"batch_size {config.batch_size} is larger than the training set; lower --batch-size")
    return train_loader, test_loader, info


def _check_folder_sizes(config: TrainConfig) -> None:
    """:func:`_check_sizes` for a data set whose info does not give its size (an ImageFolder) and a
    run with a box: the size is that of its first training image (decoded once here), before the data
    set is read. The built-in sets are checked by :func:`check_input_kind`; an ImageFolder's crop
    padding alone once its data is read (:func:`_set_up`), before any file is written."""
    from lmix.data.info import dataset_info
    from lmix.data.sources import default_image_size, resolve_root

    if dataset_info(config.dataset).image_size is not None or not _box_sides(config):
        return
    path = resolve_root(config.dataset, config.data_root, download=config.download)
    _check_sizes(config, tuple(int(s) for s in default_image_size(config.dataset, path)))


def _raw_model(config: TrainConfig, info: Any, device: torch.device) -> tuple[nn.Module, torch.memory_format]:
    """The model, initialised from ``config.seed`` on ``device``, and the memory format it runs in."""
    torch.manual_seed(config.seed)
    raw_model = build_model(config, info).to(device)
    if getattr(info, "spatial_dims", 2) != 2:  # channels_last is a layout of 4-D (B, C, H, W) tensors only
        return raw_model, torch.contiguous_format
    channels_last = config.channels_last if config.channels_last is not None else device.type == "cuda"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return raw_model.to(memory_format=memory_format), memory_format


def _training_step(
    config: TrainConfig,
    env: DistEnv,
    device: torch.device,
    raw_model: nn.Module,
    mixer: Mixer,
    *,
    amp_dtype: torch.dtype | None,
    memory_format: torch.memory_format,
) -> tuple[nn.Module, Step]:
    """The model the optimiser steps (``raw_model``, compiled and/or wrapped in DDP) and the step.

    The whole step is compiled for input-space mixers; PatchUp mixes inside the model's forward
    and DDP needs its own wrapper around the compiled model, so those compile the model alone.
    """
    whole_step = config.compile and not mixer.uses_model and not env.enabled
    model: nn.Module = raw_model
    if config.compile and not whole_step:
        model = torch.compile(model, mode=None if config.compile_mode == "default" else config.compile_mode)
    if env.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if whole_step:
        step: Step = CompiledStep(
            raw_model,
            mixer,
            amp_dtype=amp_dtype,
            memory_format=memory_format,
            label_smoothing=config.label_smoothing,
            mode=config.compile_mode,
        )
        return model, step
    autocast = _autocast(device, amp_dtype)
    return model, eager_step(
        model, mixer, autocast=autocast, memory_format=memory_format, label_smoothing=config.label_smoothing
    )


def _autocast(device: torch.device, amp_dtype: torch.dtype | None) -> Any:
    """The autocast context of the forward pass (a null context in full precision)."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def _sgd(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.SGD:
    """SGD of the config; the fused CUDA kernel on CUDA (one launch for all parameters)."""
    kwargs: dict[str, Any] = dict(
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov and config.momentum > 0,
    )
    if device.type == "cuda":
        try:
            return torch.optim.SGD(model.parameters(), fused=True, **kwargs)
        except (TypeError, RuntimeError, ValueError):
            pass  # a torch without fused SGD, or parameters it does not support
    return torch.optim.SGD(model.parameters(), **kwargs)


def _check_labels(num_classes: int | None, **loaders: Any) -> None:
    """Class indices in [0, num_classes), checked once here so that no training step has to."""
    if num_classes is None:
        return
    for split, loader in loaders.items():
        labels = getattr(loader, "labels", None)
        if not isinstance(labels, torch.Tensor) or labels.numel() == 0:
            continue  # file data sets: labels are folder indices, in range by construction
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_classes:
            raise LmixValueError(
                f"the {split} labels span [{lo}, {hi}] but the data set has {num_classes} classes [0, {num_classes - 1}]"
            )


class _TrainingInput:
    """A training loader whose images arrive in the step's dtype and memory format (CUDA only:
    on the CPU the loader's float32 contiguous batches are what the step takes)."""

    def __init__(self, loader: Any, *, dtype: torch.dtype, memory_format: torch.memory_format) -> None:
        self.loader = loader
        self.dtype = dtype
        self.memory_format = memory_format

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def __iter__(self):
        for images, labels in self.loader:
            yield images.to(dtype=self.dtype, memory_format=self.memory_format), labels


def _resume(run: _Run, ckpt: dict[str, Any]) -> None:
    """Load the checkpoint's model, optimiser, schedule, scaler, RNG states and history into ``run``."""
    # DDP and torch.compile share raw_model's parameters: loading into it updates them too.
    run.raw_model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    run.scaler.load_state_dict(ckpt["scaler"])
    rngs = ckpt["rng"]
    if len(rngs) != run.env.world_size:
        raise RunError(
            f"checkpoint in {str(run.out)!r} was written by {len(rngs)} process(es); resume it with the same number"
        )
    _rng_restore(rngs[run.env.rank], run.mixer, run.train_loader)
    run.state = _State(
        epoch=int(ckpt["epoch"]),
        best_acc=float(ckpt["best_acc"]),
        best_epoch=int(ckpt["best_epoch"]),
        history=list(ckpt["history"]),
        train_seconds=float(ckpt["train_seconds"]),
        train_images=int(ckpt["train_images"]),
    )
    if run.env.is_main:
        run.log(f"resuming {run.out} after epoch {run.state.epoch}/{run.config.epochs}")


def _start_outputs(run: _Run) -> None:
    """config.yaml, metrics.jsonl as of the checkpoint, TensorBoard and the progress bar (rank 0)."""
    if not run.env.is_main:
        return
    run.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.out / "config.yaml", run.config.to_yaml())
    # Rows of epochs after the checkpoint (checkpoint_every > 1) are dropped: they are trained again.
    atomic_write_jsonl(run.out / "metrics.jsonl", run.state.history)
    run.writer = _tensorboard(run.out, run.config)
    run.bar = _progress_bar(run.config, run.env, len(run.train_loader), run.state.epoch, run.train_loader)


def _train_one_epoch(run: _Run, epoch: int, stop: StopOnSignal) -> dict[str, Any]:
    """Train one epoch; the row of metrics.jsonl with the epoch's training figures (summed over ranks).

    The row's ``_finite`` entry (removed by ``_check_diverged``) says whether the losses and the
    weights stayed finite: read with the loss, in the epoch's single device-to-host copy.
    """
    run.train_loader.set_epoch(epoch)
    lr_at_start = run.optimizer.param_groups[0]["lr"]
    t0 = time.perf_counter()
    bar, world = run.bar, run.env.world_size
    loss_sum, correct_sum, seen = train_epoch(
        run.model,
        run.train_loader,
        run.step,
        optimizer=run.optimizer,
        scaler=run.scaler,
        scheduler=run.scheduler,
        on_batch=(lambda n: bar.update(n * world)) if bar is not None else None,
        before_step=stop.check,
    )
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    epoch_seconds = time.perf_counter() - t0
    # A NaN or inf anywhere in the weights or BatchNorm statistics makes this sum non-finite;
    # summed over ranks, every rank then sees it and stops together.
    weights = torch.stack(
        [t.detach().sum(dtype=torch.float64) for t in run.raw_model.state_dict().values() if t.is_floating_point()]
    ).sum()
    totals = all_reduce_sum(
        torch.stack(
            [loss_sum, correct_sum, torch.tensor(float(seen), device=run.device, dtype=torch.float64), weights]
        ),
        run.env,
    )
    host = totals.tolist()
    return {
        "epoch": epoch + 1,
        "lr": lr_at_start,
        "train_loss": host[0] / host[2],
        "train_acc": 100.0 * host[1] / host[2],
        "train_images": int(host[2]),
        "epoch_seconds": epoch_seconds,
        "_finite": math.isfinite(host[0]) and math.isfinite(host[3]),
    }


def _check_diverged(run: _Run, epoch: int, row: dict[str, Any], saved_epoch: int) -> None:
    """Raise TrainingDiverged if the epoch's loss or weights are not finite, or a loss of ``row``
    passes :func:`lmix.experiments.divergence.loss_problem`'s bound (before anything is written).

    ``row`` holds host numbers the epoch has read back already: checking them costs no device sync.
    """
    if row.pop("_finite", True):
        what = loss_problem(row, run.num_classes)
        if what is None:
            return
    else:
        loss = row["train_loss"]
        what = f"train loss {loss}" if not math.isfinite(loss) else "a weight or BatchNorm statistic is not finite"
    kept = f"the checkpoint after epoch {saved_epoch} is kept" if saved_epoch else "no checkpoint was written"
    raise TrainingDiverged(
        f"lmix train: training diverged in epoch {epoch + 1} ({what}); {kept} in {run.out}; "
        f"no summary written. Lower --lr (now {run.config.lr}) or check the data",
        out=run.out,
        epoch=epoch + 1,
        saved_epoch=saved_epoch,
    )


def _evaluate(run: _Run) -> dict[str, Any]:
    """Test loss and accuracy (and clean accuracy on a fixed subset of the training images)."""
    # Evaluate the unwrapped model: DDP's forward would sync buffers and expect a backward.
    row: dict[str, Any] = {}
    kw = dict(env=run.env, autocast=run.autocast, memory_format=run.memory_format)
    row["test_loss"], row["test_acc"], row["test_images"] = evaluate(run.raw_model, run.test_loader, **kw)
    if run.clean_train_loader is not None:
        row["clean_train_loss"], row["clean_train_acc"], _ = evaluate(run.raw_model, run.clean_train_loader, **kw)
    return row


_ROW_ORDER = (
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "train_images",
    "test_loss",
    "test_acc",
    "test_images",
    "clean_train_loss",
    "clean_train_acc",
    "epoch_seconds",
    "train_images_per_sec",
    "best_acc",
)


def _record_epoch(run: _Run, epoch: int, row: dict[str, Any]) -> None:
    """Add the epoch to the run's state (best accuracy, totals, history)."""
    state = run.state
    row["train_images_per_sec"] = row["train_images"] / max(row["epoch_seconds"], 1e-9)
    state.train_seconds += row["epoch_seconds"]
    state.train_images += row["train_images"]
    state.epoch = epoch + 1
    if "test_acc" in row and row["test_acc"] > state.best_acc:
        state.best_acc, state.best_epoch = row["test_acc"], epoch + 1
    row["best_acc"] = state.best_acc
    ordered = {k: row[k] for k in _ROW_ORDER if k in row}
    row.clear()
    row.update(ordered)
    state.history.append(row)


def _write_checkpoint(run: _Run) -> None:
    """Checkpoint and metrics.jsonl of the epoch just recorded (rank 0 writes; every rank's RNG states)."""
    state = run.state
    rngs = all_gather_objects(_rng_snapshot(run.mixer, run.train_loader), run.env)
    if not run.env.is_main:
        return
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "config": run.config.to_dict(),
        "epoch": state.epoch,
        "model": run.raw_model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "rng": rngs,
        "best_acc": state.best_acc,
        "best_epoch": state.best_epoch,
        "history": state.history,
        "train_seconds": state.train_seconds,
        "train_images": state.train_images,
    }
    # Checkpoint first: metrics.jsonl is rewritten from the checkpoint's history on resume.
    atomic_torch_save(run.out / CHECKPOINT, _plain(ckpt))
    atomic_write_jsonl(run.out / "metrics.jsonl", state.history)


def _write_metrics(run: _Run) -> None:
    """metrics.jsonl of an epoch without a checkpoint (``checkpoint_every`` > 1)."""
    if run.env.is_main:
        atomic_write_jsonl(run.out / "metrics.jsonl", run.state.history)


def _report_epoch(run: _Run, epoch: int, row: dict[str, Any]) -> None:
    """TensorBoard scalars and the progress bar's postfix (or a log line without a bar)."""
    if not run.env.is_main:
        return
    config = run.config
    if run.writer is not None:
        for key, value in row.items():
            if key != "epoch":
                run.writer.add_scalar(key, value, epoch + 1)
        run.writer.flush()
    if run.bar is not None:
        run.bar.set_postfix(
            epoch=f"{epoch + 1}/{config.epochs}", best_acc=f"{run.state.best_acc:.2f}", loss=f"{row['train_loss']:.3f}"
        )
    elif config.progress:
        shown = f", test acc {row['test_acc']:.2f}%" if "test_acc" in row else ""
        run.log(f"epoch {epoch + 1}/{config.epochs}: train loss {row['train_loss']:.4f}{shown}")


def _finish(run: _Run) -> dict[str, Any]:
    """The run's summary, written to summary.json by rank 0."""
    config, state = run.config, run.state
    last = state.history[-1]
    summary = {
        "final_acc": last["test_acc"],
        "best_acc": state.best_acc,
        "best_epoch": state.best_epoch,
        "final_test_loss": last["test_loss"],
        "final_train_acc": last["train_acc"],
        "final_clean_train_acc": last.get("clean_train_acc"),
        "epochs": config.epochs,
        "method": config.method,
        "mixer": run.mixer.describe(),
        "model": config.model,
        "dataset": config.dataset,
        "seed": config.seed,
        "train_images_per_sec": state.train_images / max(state.train_seconds, 1e-9),
        "train_seconds": state.train_seconds,
        "num_params": sum(p.numel() for p in run.raw_model.parameters()),
        "num_train_images_per_epoch": last["train_images"],
        "num_test_images": last["test_images"],
        "world_size": run.env.world_size,
        "device": str(run.device),
        "amp": "none" if run.amp_dtype is None else str(run.amp_dtype).replace("torch.", ""),
        "accuracy_units": "percent",
        **provenance(run.device),
    }
    if run.env.is_main:
        atomic_write_json(run.out / SUMMARY_JSON, summary)
        clear_failed(run.out)  # an earlier attempt's failure is over: the run finished
        run.log(
            f"test accuracy: final {summary['final_acc']:.2f}%, best {summary['best_acc']:.2f}% "
            f"(epoch {state.best_epoch}); results in {run.out}"
        )
    return summary


def _plain(obj: Any) -> Any:
    """Make a checkpoint loadable with ``weights_only=True``: tuples -> lists, numpy -> python."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, torch.Tensor):
        return obj.item()
    return obj


def _clean_train_loader(train_loader: Any, config: TrainConfig, info: Any, env: DistEnv, device: torch.device):
    """A no-augmentation loader over a fixed stratified subset of the training images, or None."""
    if config.eval_train <= 0 or not hasattr(train_loader, "images"):
        return None
    from lmix.data import DeviceLoader, stratified_subset

    n = min(config.eval_train, train_loader.images.shape[0])
    idx = stratified_subset(train_loader.labels.cpu(), n, seed=config.seed).to(train_loader.images.device)
    return DeviceLoader(
        train_loader.images[idx],
        train_loader.labels[idx],
        info=info,
        batch_size=max(1, config.test_batch_size // env.world_size),
        train=False,
        device=device,
        seed=config.seed,
        rank=env.rank,
        world_size=env.world_size,
    )


def _progress_bar(config: TrainConfig, env: DistEnv, steps_per_epoch: int, done_epochs: int, loader: Any):
    if not (config.progress and env.is_main):
        return None
    from tqdm.auto import tqdm

    per_epoch = loader.num_samples if hasattr(loader, "num_samples") else steps_per_epoch * config.batch_size
    return tqdm(
        total=per_epoch * config.epochs,
        initial=per_epoch * done_epochs,
        unit="img",
        unit_scale=True,
        desc=f"{config.method} {config.model} {config.dataset}",
        dynamic_ncols=True,
        mininterval=1.0,
    )


def _tensorboard_writer(config: TrainConfig) -> Any:
    """TensorBoard's ``SummaryWriter`` class where ``config.tensorboard`` is set, else None.

    Raises:
        RunError: the tensorboard package is not installed (one line saying how to install it).
    """
    if not config.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        from lmix._extras import install_hint

        raise RunError(f"--tensorboard needs the tensorboard package: {install_hint('tensorboard')}") from None
    return SummaryWriter


def _tensorboard(out: Path, config: TrainConfig):
    writer = _tensorboard_writer(config)
    return None if writer is None else writer(log_dir=str(out / "tb"))
