"""Sweeps: a grid of training runs from one YAML spec, each run in its own folder.

Spec format (``lmix sweep SPEC.yaml --out DIR``)::

    name: table1                 # optional label
    description: ...             # optional free text
    config: ../paper/table1_cifar10_preact_resnet18.yaml   # optional: TrainConfig YAML file(s),
                                 # relative to the spec; layered under ``base``
    base:                        # TrainConfig settings common to every run
      epochs: 300
      milestones: [75, 150, 225]
    grid:                        # key -> list of alternatives; the cartesian product is expanded
      model: [preact_resnet18, wrn28_10]
      method: [none, mixup, cutmix, fmix, lmix]
      seed: [0, 1, 2, 3, 4]
    include:                     # optional: more grids (same format), added to ``grid``'s runs
      - {model: [preact_resnet18], method: [cutout, patchup], seed: [0, 1, 2, 3, 4]}
    runs:                        # optional: single runs, each a mapping of settings (no expansion)
      - {model: preact_resnet18, method: lmix+mixup, seed: 0}
    attack_eps: [0, 1, 2, 4, 8]  # optional: FGSM after training (1/255 units) -> RUN/fgsm.json
    analysis:                    # optional: the analysis plan, declared before the runs
      written: before_runs       # or after_runs: a plan written after results were seen (post hoc)
      primary: [final_acc, fgsm@2]
      comparisons: [[lmix, fmix], {each: none}, {slope: k}]
      test: paired
      correction: {method: holm, family: all}

``grid`` may also be a list of grids. Every key is a ``TrainConfig`` field (``lmix train --help``);
a grid value is a list of alternatives (a scalar is shorthand for one alternative; for list-valued
fields such as ``milestones`` each alternative is itself a list). ``out`` is set by the sweep.

``analysis`` (:mod:`lmix.experiments.plan`) declares what ``lmix report`` tests first: the
primary metrics, the comparisons (``[a, b]`` for a - b, where a group is a method or ``{method:
lmix, k: 4}``; ``{each: b}``; ``{slope: k}``), the paired t-test by seed and the Holm family
(``all``: every comparison x every primary metric; ``per_metric``). Its syntax is checked when the
spec is read, and its groups against the runs when it is expanded (a plan naming a method, a k or
an eps the spec does not produce stops the sweep before anything runs); ``sweep.json`` carries it.

Later layers win: config file(s) < base < grid/include/runs entry < ``--set`` overrides.
Mixing settings the run's method does not take (e.g. ``alpha`` for ``none``) are dropped, and
runs that become identical are run once.

Run folders are ``DIR/dataset=.../model=.../method=.../<other varied keys>/seed=...``: dataset,
model, method and seed always, plus every other key that a grid, include or run entry sets
(alphabetically; keys whose value is unset are left out). Names depend only on the spec, so
they are stable across invocations and machines.

Sharding (``--shard i/N``, 1-based: ``1/N`` .. ``N/N``): run number ``j`` (0-based, in expansion
order) belongs to shard ``j % N + 1``, so shards are disjoint, cover the sweep, and are balanced.
``--shard auto`` reads a Slurm job array's task id (0-based) and count (:func:`parse_shard`).
Expansion order varies ``seed`` slowest, so a half-finished sweep already holds complete
comparisons for the first seeds.

Concurrency: a run is trained under the run folder's lock (:class:`lmix.experiments.io.RunLock`,
an exclusive ``flock`` on ``RUN_DIR/.lock`` holding "host pid"), the same lock ``lmix train``
takes; another process finding it locked skips the run as busy. The kernel drops the lock when
its holder dies, so a killed sweep never leaves a stale lock behind. Finished runs
(``summary.json``) are skipped; interrupted ones are resumed by ``lmix.experiments.train.train``.

Parallel runs (``--jobs N``): N job processes at once (:func:`run_sweep`), each training one run
under its lock. Failed runs get ``RUN/failed.json`` and no summary; the sweep goes on, and the next
sweep retries them. The jobs' files live in a scratch folder inside the output folder
(``DIR/.lmix-sweep-*``), never in the system's temporary folder: the sweep removes it when it
ends, and the next sweep removes one that a killed sweep left.

Damaged records: the sweep reads a run folder with the checked readers that ``lmix report`` uses
(:mod:`lmix.experiments.records`), so both judge it alike. A folder whose record cannot be used (a
damaged ``config.yaml``, ``summary.json``, ``metrics.jsonl``, ``fgsm.json`` or ``failed.json``, or a
finished run without its ``config.yaml`` or ``metrics.jsonl``) is never trained over, since its
files may be the only copy of a result: the sweep stops before anything runs with one line naming
the folder, the file and what is wrong (exit code 2), and ``--dry-run`` lists the run as
``unreadable`` and ends with the same line. A finished run whose ``metrics.jsonl`` shows a diverged
loss is done (re-training it would diverge again) and its line says so; the report counts it
failed (diverged). A folder the sweep may not write (a read-only ``--out``) is one line too, before
anything is written.

The modules, in the order a sweep uses them: :mod:`~lmix.experiments.sweep.spec` (reading a
spec), :mod:`~lmix.experiments.sweep.expand` (its runs), :mod:`~lmix.experiments.sweep.shards`,
:mod:`~lmix.experiments.sweep.status` (what a run folder holds), :mod:`~lmix.experiments.sweep.fgsm`
(the attack after training), :mod:`~lmix.experiments.sweep.one_run` (one run under its lock),
:mod:`~lmix.experiments.sweep.jobs` (runs in job processes) and :mod:`~lmix.experiments.sweep.run`
(:func:`run_sweep`).
"""

from lmix.experiments.io import RunLock
from lmix.experiments.sweep.expand import Run, expand, format_value
from lmix.experiments.sweep.jobs import SweepInterrupted, resolve_gpus
from lmix.experiments.sweep.one_run import RunOutcome
from lmix.experiments.sweep.run import SweepResult, failed_line, run_sweep, sweep_manifest
from lmix.experiments.sweep.shards import parse_shard, shard_runs
from lmix.experiments.sweep.spec import SPEC_KEYS, SweepSpec, load_spec, parse_spec
from lmix.experiments.sweep.status import FAILED_JSON, conflict, read_failed, run_status

__all__ = [
    "SweepSpec",
    "Run",
    "RunLock",
    "RunOutcome",
    "SweepInterrupted",
    "SweepResult",
    "resolve_gpus",
    "failed_line",
    "read_failed",
    "load_spec",
    "parse_spec",
    "expand",
    "parse_shard",
    "shard_runs",
    "run_status",
    "run_sweep",
    "sweep_manifest",
    "conflict",
    "format_value",
    "SPEC_KEYS",
    "FAILED_JSON",
]
