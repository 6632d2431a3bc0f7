"""The mixer a training config describes: the settings that reach it, building it, and the values
it was built with.

A :class:`~lmix.experiments.train.TrainConfig`'s mixing fields (``alpha``, ``k``, ``box_size``,
...) may be ``None``: "the method's default". Before a run saves its ``config.yaml``, the trainer
resolves them (:func:`resolve_mixer_settings`): each field then holds the value the run's mixer
was built with, defaults included, and the saved file builds the same mixer again. A field stays
``None`` where the method does not take it, or where the components of a combination such as
``lmix+mixup`` were built with different values of it (by default the choice picks a method per
batch, ``mode: batch``, and its components draw per sample). ``summary.json``'s ``mixer`` entry
(``Mixer.describe()``) states every value, those included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lmix.errors import LmixValueError
from lmix.mixing import MixChoice, Mixer, create_mixer
from lmix.mixing.registry import accepted_params, mixer_class

if TYPE_CHECKING:
    from lmix.experiments.train.config import TrainConfig

__all__ = [
    "METHOD_PARAM_KEYS",
    "CHOICE_KEYWORDS",
    "MIXER_KEYWORDS",
    "mixer_params",
    "ignored_mixer_settings",
    "mixer_from_config",
    "mixer_settings",
    "resolve_mixer_settings",
]

#: The mixing settings of a config: what a ``method_params`` entry may hold.
METHOD_PARAM_KEYS = (
    "alpha",
    "decay",
    "k",
    "image_k",
    "max_soft",
    "reformulate",
    "box_size",
    "box_rounding",
    "mix_mode",
    "mix_p",
    "mix_schedule",
    "patchup_prob",
    "gamma",
    "block_size",
    "patchup_type",
    "loss_scale",
)
#: The settings that go to the choice of a combined method such as lmix+mixup, and its keyword for each.
CHOICE_KEYWORDS = {"mix_p": "p", "mix_schedule": "schedule"}
#: The settings that go to the mixers, and the keyword each becomes.
MIXER_KEYWORDS = {
    key: {"box_size": "size", "mix_mode": "mode"}.get(key, key)
    for key in METHOD_PARAM_KEYS
    if key not in CHOICE_KEYWORDS
}


def _accepted(config: TrainConfig) -> set[str]:
    """The keyword arguments the method's mixers take (all parts of a combination such as lmix+mixup)."""
    return set().union(*(accepted_params(mixer_class(n.strip())) for n in config.method.split("+")))


def mixer_params(config: TrainConfig) -> dict[str, Any]:
    """The mixer keyword arguments the config sets (None = the method's default)."""
    accepted = _accepted(config)
    params = {
        keyword: getattr(config, key)
        for key, keyword in MIXER_KEYWORDS.items()
        if getattr(config, key) is not None and keyword in accepted
    }
    choice = {
        keyword: getattr(config, key) for key, keyword in CHOICE_KEYWORDS.items() if getattr(config, key) is not None
    }
    if choice and "+" not in config.method:
        raise LmixValueError("--mix-p and --mix-schedule apply only to combined methods such as lmix+mixup")
    return {**params, **choice}


def ignored_mixer_settings(config: TrainConfig) -> list[str]:
    """Mixing settings in ``config`` that the method does not take (shared configs set e.g. alpha for 'none')."""
    accepted = _accepted(config)
    return [
        key for key, keyword in MIXER_KEYWORDS.items() if getattr(config, key) is not None and keyword not in accepted
    ]


def mixer_from_config(config: TrainConfig) -> Mixer:
    """The run's mixer: ``config.method`` with the config's mixing settings, seeded with ``config.seed``.

    Every DDP rank builds this same mixer: inside the process group each rank draws its own
    stream from it (``Mixer.generator_for``), and rank 0's checkpoint resumes them all.

    Raises:
        LmixValueError: an unknown method, or a setting its mixer rejects.
    """
    return create_mixer(config.method, seed=config.seed, **mixer_params(config))


def mixer_settings(mixer: Mixer) -> dict[str, Any]:
    """Every mixing field of a config (``METHOD_PARAM_KEYS``), as ``mixer`` was built.

    ``None`` for a field the mixer does not take, and for one whose value differs between a
    combination's components (or between the choice and its components, for ``mix_mode``).
    """
    hparams = mixer.hparams()
    choice = hparams if isinstance(mixer, MixChoice) else {}
    parts = choice["mixers"] if choice else [hparams]
    settings: dict[str, Any] = {key: choice.get(keyword) for key, keyword in CHOICE_KEYWORDS.items()}
    for key, keyword in MIXER_KEYWORDS.items():
        values = [part[keyword] for part in parts if keyword in part]
        if keyword in choice:
            values.append(choice[keyword])
        settings[key] = _agreed(values)
    return {key: settings[key] for key in METHOD_PARAM_KEYS}


def _agreed(values: list[Any]) -> Any:
    """The one value ``values`` agree on (None if there is none), as a config's scalar field holds it.

    A square box built from one side (Cutout's ``size`` 16 -> ``[16, 16]``) goes back to that side.
    """
    if not values or any(v != values[0] for v in values):
        return None
    if isinstance(values[0], list):  # the mixers' settings are scalars in the config
        return _agreed(values[0])
    return values[0]


def resolve_mixer_settings(config: TrainConfig) -> Mixer:
    """Build the run's mixer and set every mixing field of ``config`` to the value it was built with.

    In place; idempotent: the resolved config builds an equal mixer. Returns the mixer.

    Raises:
        LmixValueError: an unknown method, or a setting its mixer rejects.
    """
    mixer = mixer_from_config(config)
    for key, value in mixer_settings(mixer).items():
        setattr(config, key, value)
    return mixer
