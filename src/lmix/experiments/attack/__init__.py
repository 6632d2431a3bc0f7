"""FGSM robustness (the paper's Fig. 5): attack a trained run's model in pixel space.

:mod:`~lmix.experiments.attack.fgsm` is the attack itself (:class:`Normalized`, :func:`fgsm`,
:func:`fgsm_accuracy`), :mod:`~lmix.experiments.attack.eps` reads eps lists as users write them
(:func:`parse_eps`), and :mod:`~lmix.experiments.attack.run` attacks a run folder written by
``lmix train`` (:func:`attack_run`). The run folder's files (the checkpoint it reads, the
``fgsm.json`` it writes) are :mod:`lmix.experiments.records`'; the curves' figure is
:func:`lmix.experiments.report.plots.plot_fgsm_runs`. ``lmix attack`` is the command
(docs/guide/fgsm.md).
"""

from lmix.experiments.attack.eps import parse_eps
from lmix.experiments.attack.fgsm import Normalized, fgsm, fgsm_accuracy
from lmix.experiments.attack.run import attack_run, check_attackable
from lmix.experiments.records import FGSM_JSON, FGSM_PNG, check_run_dir, read_fgsm, write_fgsm

__all__ = [
    "Normalized",
    "fgsm",
    "fgsm_accuracy",
    "parse_eps",
    "attack_run",
    "check_attackable",
    "check_run_dir",
    "read_fgsm",
    "write_fgsm",
    "FGSM_JSON",
    "FGSM_PNG",
]
