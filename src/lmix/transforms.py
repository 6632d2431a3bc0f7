"""lmix's mixers as ``torchvision.transforms.v2`` transforms: ``LMix``, ``FMix``, ``MixUp``,
``CutMix`` and ``Cutout``.

They follow torchvision's ``MixUp`` / ``CutMix`` (``torchvision.transforms.v2._augment``): called on
a *batch* ``(images, labels)`` with (B,) integer labels (``num_classes`` required) or (B, K) soft
labels, they return the mixed images and (B, K) float targets. Unlike torchvision's, every sample
gets its own lam, partner and mask by default (``mode="sample"``), the randomness comes from the
transform's own seeded generator (different in every DataLoader worker and epoch, see
``lmix.Mixer.generator_for``), and the targets carry the *exact* mixed share of every sample.
Sampling and mixing are lmix's core mixers (``Mixer.sample`` / ``Mixer.apply``)::

    from torch.utils.data import DataLoader, default_collate
    from lmix.transforms import LMix, MixUp
    from torchvision.transforms import v2

    mix = v2.RandomChoice([LMix(num_classes=10), MixUp(num_classes=10)])
    loader = DataLoader(data, batch_size=128, collate_fn=lambda b: mix(*default_collate(b)))

Images may be ``tv_tensors.Image`` (B, C, H, W), ``tv_tensors.Video`` (B, T, C, H, W; all frames
of a sample share its mask) or pure tensors: (B, C, H, W) images, and also (B, C, L) sequences
and (B, C, D, H, W) volumes (1-D and 3-D masks and boxes; wrap a video as ``tv_tensors.Video``
to mix it frame-wise), float or uint8 (uint8 stays uint8, rounded). PIL images, bounding boxes,
masks and keypoints are refused, as torchvision does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch.utils._pytree import tree_flatten, tree_unflatten

from lmix._extras import MissingExtraModuleError

try:  # torchvision and Pillow come with the `train` extra, not with the core install (torch alone)
    import PIL.Image
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import Transform
except ModuleNotFoundError as err:
    raise MissingExtraModuleError("lmix.transforms", "train", err.name or str(err)) from err

from lmix._checks import is_integer
from lmix.errors import LmixValueError
from lmix.mixing import base
from lmix.mixing import mixers as core
from lmix.mixing.registry import accepted_params
from lmix.mixing.validation import check_labels_in_range, short_sides

__all__ = ["LMix", "FMix", "MixUp", "CutMix", "Cutout", "MixTransform"]

# KeyPoints exist from torchvision 0.23 on; older versions have nothing of the kind to refuse.
_REFUSED = tuple(
    t
    for t in (PIL.Image.Image, tv_tensors.BoundingBoxes, tv_tensors.Mask, getattr(tv_tensors, "KeyPoints", None))
    if t is not None
)


def _default_labels(inputs: Any) -> Any:
    """torchvision's default ``labels_getter``: the second item of a pair, or a dict's ``"labels"``."""
    if isinstance(inputs, (tuple, list)) and len(inputs) >= 2:
        return inputs[1]
    if isinstance(inputs, dict):
        for key, value in inputs.items():
            if isinstance(key, str) and key.lower() == "labels":
                return value
    raise LmixValueError(
        "could not find the labels: pass (images, labels), a dict with a 'labels' entry, or labels_getter=callable"
    )


def _labels_getter(labels_getter: Any) -> Callable[[Any], Any]:
    if labels_getter == "default":
        return _default_labels
    if callable(labels_getter):
        return labels_getter
    raise LmixValueError(f"labels_getter must be 'default' or a callable, got {labels_getter!r}")


def _is_pure_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and not isinstance(value, tv_tensors.TVTensor)


def _as_batch(inpt: torch.Tensor) -> torch.Tensor:
    """The (B, C, *spatial) plain tensor a mixer takes: a video's frames become channels (every frame
    of a sample then gets the same 2-D mask); images, sequences and volumes as they are."""
    x = inpt.as_subclass(torch.Tensor)
    if isinstance(inpt, tv_tensors.Video):
        x = x.reshape(x.shape[0], -1, x.shape[-2], x.shape[-1])
    return x


class MixTransform(Transform):
    """Base class: a batch transform driven by one of lmix's core mixers (``mixer_class``).

    Args:
        num_classes: number of classes, needed for (B,) integer labels; optional for (B, K) soft
            labels (checked against K when given).
        labels_getter: ``"default"`` (the second item of a ``(images, labels)`` pair, or the
            ``"labels"`` entry of a dict, as in torchvision) or a callable returning the labels.
        seed: seed of the mixer's own generator (``None``: non-deterministic).
        **params: the core mixer's keyword-only parameters (``alpha``, ``mode``, ...).

    Attributes:
        mixer: the core ``lmix.Mixer`` that samples and applies the mixing; its random state is
            part of the transform's ``state_dict()`` (``_extra_state``).
    """

    mixer_class: ClassVar[type[core.Mixer]]

    def __init__(
        self, *, num_classes: int | None = None, labels_getter: Any = "default", seed: int | None = None, **params: Any
    ) -> None:
        super().__init__()
        if num_classes is not None and (not is_integer(num_classes) or num_classes < 1):
            raise LmixValueError(f"num_classes must be an integer >= 1 or None, got {num_classes!r}")
        if labels_getter is None:
            raise LmixValueError(
                f"{type(self).__name__} needs the labels: labels_getter must be 'default' or a callable"
            )
        allowed = accepted_params(self.mixer_class) - {"seed"}
        unknown = set(params) - allowed
        if unknown:
            raise LmixValueError(
                f"unknown parameter(s) {sorted(unknown)} for {type(self).__name__}; allowed: "
                f"{sorted(allowed | {'num_classes', 'labels_getter', 'seed'})}"
            )
        self.num_classes = None if num_classes is None else int(num_classes)
        self._labels_getter = _labels_getter(labels_getter)
        # Not a registered submodule: the transform's own ``_extra_state`` carries the mixer's state
        # (the format torch.save and accelerate's register_for_checkpointing have always seen).
        object.__setattr__(self, "mixer", self.mixer_class(seed=seed, **params))

    def forward(self, *inputs: Any) -> Any:
        """Mix a batch: ``t(images, labels)`` -> ``(mixed images, (B, K) float targets)``.

        Any structure torchvision accepts works (``t((images, labels))``, a dict with a
        ``"labels"`` entry); every image-like entry is mixed with the same parameters.
        """
        inputs = inputs if len(inputs) > 1 else inputs[0]
        flat_inputs, spec = tree_flatten(inputs)
        name = type(self).__name__
        if any(isinstance(x, _REFUSED) for x in flat_inputs):
            raise LmixValueError(
                f"{name}() mixes batches of image tensors; it does not support PIL images, bounding boxes, "
                "masks or keypoints (convert PIL images with v2.ToImage() and batch them first)"
            )
        labels = self._labels_getter(inputs)
        labels = self._check_labels(labels)
        needs_transform = self._needs_transform_list(flat_inputs)
        images = [
            i
            for i, (inpt, needed) in enumerate(zip(flat_inputs, needs_transform))
            if needed
            and inpt is not labels
            and (isinstance(inpt, (tv_tensors.Image, tv_tensors.Video)) or _is_pure_tensor(inpt))
        ]
        if not images:
            raise LmixValueError(f"{name}() found no image tensor to mix in its input (expected (images, labels))")
        batch_size = labels.shape[0]
        first = flat_inputs[images[0]]
        self._check_image(first, batch_size=batch_size, size=None, device=labels.device)
        size = tuple(first.shape[2:]) if _is_pure_tensor(first) else tuple(first.shape[-2:])
        for i in images:
            self._check_image(flat_inputs[i], batch_size=batch_size, size=size, device=labels.device)
        problem = short_sides(size)
        if problem is not None:
            raise LmixValueError(f"{name}() needs {problem}")
        params = self.mixer.draw(_as_batch(first))
        outputs = list(flat_inputs)
        for i in images:
            outputs[i] = self._mix_images(flat_inputs[i], labels, params)
        index = next(i for i, inpt in enumerate(flat_inputs) if inpt is labels)
        outputs[index] = self._mix_labels(labels, params)
        return tree_unflatten(outputs, spec)

    # -- pieces --------------------------------------------------------------------------
    def _check_labels(self, labels: Any) -> torch.Tensor:
        name = type(self).__name__
        if not isinstance(labels, torch.Tensor):
            raise LmixValueError(f"{name}(): the labels must be a tensor, got {type(labels).__name__}")
        if labels.ndim == 1:
            if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
                raise LmixValueError(f"{name}(): (B,) labels must be integer class indices, got dtype {labels.dtype}")
            if self.num_classes is None:
                raise LmixValueError(f"{name}(): num_classes must be given for (B,) integer labels")
            check_labels_in_range(labels, self.num_classes)
        elif labels.ndim == 2:
            if self.num_classes is not None and labels.shape[1] != self.num_classes:
                raise LmixValueError(
                    f"{name}(): (B, K) soft labels must have K = num_classes = {self.num_classes}, got K = {labels.shape[1]}"
                )
        else:
            raise LmixValueError(
                f"{name}(): labels must be (B,) class indices or (B, K) soft labels, got shape {tuple(labels.shape)}"
            )
        if labels.shape[0] < 1:
            raise LmixValueError(f"{name}(): the batch is empty")
        return labels

    def _check_image(self, inpt: torch.Tensor, *, batch_size: int, size: tuple | None, device: torch.device) -> None:
        name = type(self).__name__
        if isinstance(inpt, tv_tensors.Video):
            ranks, kind = (5,), "a (B, T, C, H, W) video"
        elif isinstance(inpt, tv_tensors.Image):
            ranks, kind = (4,), "a (B, C, H, W) image"
        else:
            ranks, kind = (3, 4, 5), "a (B, C, L), (B, C, H, W) or (B, C, D, H, W)"
        if inpt.ndim not in ranks:
            raise LmixValueError(f"{name}() mixes batches: expected {kind} tensor, got shape {tuple(inpt.shape)}")
        if inpt.shape[0] != batch_size:
            raise LmixValueError(f"{name}(): {inpt.shape[0]} images but {batch_size} labels")
        spatial = tuple(inpt.shape[2:]) if _is_pure_tensor(inpt) else tuple(inpt.shape[-2:])
        if size is not None and spatial != size:
            raise LmixValueError(f"{name}(): all images must share their spatial size; got {size} and {spatial}")
        if inpt.is_complex() or inpt.dtype == torch.bool:
            raise LmixValueError(f"{name}(): images must be floating point or integer, got dtype {inpt.dtype}")
        if inpt.device != device:
            raise LmixValueError(f"{name}(): images on {inpt.device} but labels on {device}")

    def _mix_images(self, inpt: torch.Tensor, labels: torch.Tensor, params: base.MixParams) -> torch.Tensor:
        """Mix one image, video, sequence or volume tensor with ``params``; dtype and type kept."""
        shape = inpt.shape
        x = _as_batch(inpt)
        integer = not x.is_floating_point()
        work = x.float() if integer else x
        mixed = self.mixer.apply(work, labels, params).images
        if integer:
            info = torch.iinfo(x.dtype)
            mixed = mixed.round_().clamp_(info.min, info.max).to(x.dtype)
        mixed = mixed.reshape(shape)
        if isinstance(inpt, (tv_tensors.Image, tv_tensors.Video)):
            return tv_tensors.wrap(mixed, like=inpt)
        return mixed

    def _mix_labels(self, labels: torch.Tensor, params: base.MixParams) -> torch.Tensor:
        """(B, K) targets ``lam * y + (1 - lam) * y[perm]`` of one-hot or soft labels ``y``."""
        if labels.ndim == 1:
            y = F.one_hot(labels.long(), self.num_classes).float()
        else:
            y = labels if labels.is_floating_point() else labels.float()
        lam = params.lam.to(device=y.device, dtype=y.dtype)[:, None]
        partner = y.index_select(0, params.perm.to(y.device))
        return torch.lerp(partner, y, lam)

    # The mixer's random state travels in the module's state_dict (as ``_extra_state``), so that
    # checkpointing the transform (torch.save, accelerate's register_for_checkpointing) resumes it.
    def get_extra_state(self) -> dict[str, Any]:
        return self.mixer.state_dict()

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.mixer.load_state_dict(state)

    def extra_repr(self) -> str:
        return f"{self.mixer.extra_repr()}, num_classes={self.num_classes}"


class LMix(MixTransform):
    """LMix masks (``lmix.LMix``) as a torchvision v2 batch transform.

    Keyword-only: ``num_classes``, ``labels_getter``, ``seed`` (see ``MixTransform``) and
    ``lmix.LMix``'s ``alpha=1.0, decay=3.0, k=1.0, image_k=0.0, mode="sample"`` (and its other
    parameters, e.g. ``pairing``).
    """

    mixer_class = core.LMix


class FMix(MixTransform):
    """FMix masks (``lmix.FMix``: ``alpha, decay, mode``) as a torchvision v2 batch transform."""

    mixer_class = core.FMix


class MixUp(MixTransform):
    """Mixup (``lmix.Mixup``: ``alpha, mode``) as a torchvision v2 batch transform.

    torchvision's spelling; unlike ``torchvision.transforms.v2.MixUp`` the default is one lam and
    a random partner per sample (``mode="sample"``); ``mode="batch"`` draws one lam per batch.
    """

    mixer_class = core.Mixup


class CutMix(MixTransform):
    """CutMix (``lmix.CutMix``: ``alpha, size, mode``) as a torchvision v2 batch transform.

    The targets use the area actually pasted (box clipped at the border), per sample.
    """

    mixer_class = core.CutMix


class Cutout(MixTransform):
    """Cutout (``lmix.Cutout``: ``size``) as a torchvision v2 batch transform: zeroes a square per
    sample and leaves the labels unmixed (the targets are the one-hot / soft labels)."""

    mixer_class = core.Cutout
