"""Manifold Mixup (Verma et al. 2019): Mixup of hidden states at a layer drawn per batch.

Reference: vikasverma1077/manifold_mixup (``supervised/models/preresnet.py``, ``forward``;
``supervised/utils.py``, ``mixup_process``; ``supervised/main.py``, ``train()``), and the
Manifold Mixup baseline of chandar-lab/PatchUp (``models/preresnet.py``, ``main.py --train
manifold_mixup``). Per batch:

* **Layer.** A hook point ``k`` is drawn uniformly from the eligible ones: 0 (the input, i.e.
  input Mixup) and the outputs of the first stages (the original: ``layer_mix =
  random.randint(0, 2)``). Here the eligible points are the input and the outputs of ``layers``
  (any ``nn.Module``, ``lmix.mixing.hidden``) or, for an ``lmix.models.StagedNet`` with
  ``layers=None``, hook points 0, 1 and 2: the input and the outputs of ``stages[0]`` and
  ``stages[1]``, the points of PatchUp's default ``max_layer=2`` and of chandar-lab/PatchUp's
  Manifold Mixup (``--k 2``; on PreAct-ResNet: input, after the stem convolution, after
  ``layer1``). Verma et al.'s own PreAct-ResNet mixes at the input and after ``layer1`` and
  ``layer2``: ``layers=("stages.1", "stages.2")`` on lmix's PreAct-ResNets.
* **Mix.** One permutation ``perm`` and ``lam ~ Beta(alpha, alpha)`` (the original draws one
  ``lam`` per batch, ``mode="batch"``, the default here; ``mode="sample"`` draws one per
  sample); ``h' = lam * h + (1 - lam) * h[perm]`` at the drawn point.
* **Loss.** The mixed cross-entropy ``lam CE(out, y) + (1 - lam) CE(out, y[perm])``: one term,
  the same scale as Mixup's (the reference takes ``BCELoss(softmax(out), t_mix)``, linear in the
  target as cross-entropy is; lmix uses cross-entropy for every method).

``alpha`` defaults to 2.0: the value of the original's supervised Manifold Mixup command on CIFAR
(``supervised/README.md``: ``--mixup_alpha 2.0``; the script's own default of 0 turns mixing off; chandar-lab/PatchUp's
README runs its baseline with ``--alpha 1.5``). Differences from
the reference, deliberate: every random draw comes from the mixer's own generators (the layer
from its CPU generator: no device synchronisation), never Python's, numpy's or torch's global RNG.

``ManifoldMixup.__call__`` (the generic ``Mixer`` interface: ``sample`` + ``apply``) is the mixing
at hook point 0, i.e. input Mixup with the same ``alpha``, ``mode`` and ``pairing``;
``forward_loss`` is the training procedure above and is what ``lmix train --method
manifold_mixup`` uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from lmix._checks import check_probability
from lmix.errors import LmixValueError
from lmix.mixing.base import Mixer
from lmix.mixing.batch import MixedBatch, MixParams, mixed_cross_entropy
from lmix.mixing.hidden import check_layers, forward_mixed, num_hook_points, plan_generators
from lmix.mixing.sampling import sample_beta_lams
from lmix.mixing.validation import check_alpha, check_batch, check_mode, check_pairing

__all__ = ["ManifoldMixup", "ManifoldPlan", "STAGED_POINTS"]

#: Hook points eligible on a ``StagedNet`` with ``layers=None``: the input, after stages 0 and 1.
STAGED_POINTS = 3


@dataclass
class ManifoldPlan:
    """What ``forward_loss`` drew for one batch before running the model.

    Attributes:
        layer: hook point to mix at (0: the input).
        perm: (B,) int64 partner indices.
        lam: (B,) float32 own share ``lam`` (one value repeated in ``mode="batch"``).
    """

    layer: int
    perm: torch.Tensor
    lam: torch.Tensor


class ManifoldMixup(Mixer):
    """Manifold Mixup: Mixup of the hidden states at a hook point drawn per batch.

    See the module docstring for the procedure, the eligible layers and the reference lines.

    Args:
        alpha: Beta(alpha, alpha) concentration of ``lam``, > 0 (Verma et al.: 2.0).
        layers: None (the model is an ``lmix.models.StagedNet``: hook points 0, 1, 2, i.e. the
            input and the outputs of ``stages[0]`` and ``stages[1]``) or the names, as in
            ``model.named_modules()``, of the submodules of any model whose outputs may be
            mixed: the hook point is drawn uniformly from the input and these layers. Their
            outputs may have any shape with the batch first ((B, C, H, W), (B, N, D), (B, D)).
        mode: ``"batch"`` (the reference: one ``lam`` per batch) or ``"sample"`` (one per sample).
        pairing: how partners are chosen: ``"random"`` (a uniform permutation, the reference),
            ``"no_self"`` (a random cycle: nobody is its own partner), ``"flip"`` (``i`` with
            ``B - 1 - i``) or ``"roll"`` (``i`` with ``i - 1``).
        seed: seed of the mixer's own generators.
    """

    name = "manifold_mixup"
    blends = True
    uses_model = True

    def __init__(
        self,
        *,
        alpha: float = 2.0,
        layers: Sequence[str] | None = None,
        mode: str = "batch",
        pairing: str = "random",
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        self.alpha = check_alpha(alpha)
        self.layers = check_layers(layers)
        self.mode = check_mode(mode)
        self.pairing = check_pairing(pairing)

    # -- the generic Mixer interface: input Mixup ---------------------------------------------
    def sample(self, batch_size, image_size, *, device, generator):
        """Partners and ``lam`` for Mixup of the images themselves (hook point 0)."""
        perm = self.sample_partners(batch_size, device=device, generator=generator)
        lam = sample_beta_lams(self.alpha, self.mode, batch_size, device=device, generator=generator)
        return MixParams(perm=perm, lam=lam)

    # -- training: hidden-layer mixing ----------------------------------------------------------
    def num_points(self, model: nn.Module) -> int:
        """Number of eligible hook points of ``model`` (the input included)."""
        points = num_hook_points(model, self.layers, who="Manifold Mixup")
        return min(points, STAGED_POINTS) if self.layers is None else points

    def plan(
        self,
        batch_size: int,
        num_points: int,
        *,
        device: torch.device,
        generator: torch.Generator | None = None,
    ) -> ManifoldPlan:
        """Draw the hook point (uniform over ``range(num_points)``), partners and ``lam``, from
        ``generator`` or the mixer's own (``lmix.mixing.hidden.plan_generators``)."""
        control, tensors = plan_generators(self, generator, device)
        layer = int(torch.randint(0, num_points, (), generator=control, device=control.device))
        perm = self.sample_partners(batch_size, device=device, generator=tensors)
        lam = sample_beta_lams(self.alpha, self.mode, batch_size, device=device, generator=tensors)
        return ManifoldPlan(layer, perm, lam)

    def forward_loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        label_smoothing: float = 0.0,
        generator: torch.Generator | None = None,
        plan: ManifoldPlan | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, MixedBatch]:
        """One Manifold Mixup training forward pass: draw a plan, run the model mixing at its
        hook point, the mixed cross-entropy.

        Args:
            model: a ``lmix.models.StagedNet`` (possibly inside DDP or ``torch.compile``), or any
                module whose submodules ``layers`` names.
            images: (B, C, H, W) floating point.
            labels: (B,) integer class indices.
            label_smoothing: in [0, 1], applied to both targets.
            generator: source of all randomness (default: the mixer's own generators).
            plan: use this plan instead of drawing one (tests, analysis).

        Returns:
            (B, K) logits, the scalar float32 loss, and a ``MixedBatch`` (model input after
            mixing at point 0, else the images; ``labels``; partners' labels; the ``lam``
            applied, in the hidden states' dtype as Mixup reports it).
        """
        images, labels = check_batch(images, labels)
        check_probability(label_smoothing, name="label_smoothing")
        if plan is None:
            plan = self.plan(images.shape[0], self.num_points(model), device=images.device, generator=generator)
        else:
            self.num_points(model)  # the same checks of the model and its layers
        record: dict[str, torch.Tensor] = {}

        def mix(h: torch.Tensor) -> torch.Tensor:
            if not h.is_floating_point():
                raise LmixValueError(f"Manifold Mixup interpolates floating point hidden states, got dtype {h.dtype}")
            weight = plan.lam.to(device=h.device, dtype=h.dtype)
            partner = h.index_select(0, plan.perm.to(h.device))
            out = torch.lerp(partner, h, weight.view(-1, *([1] * (h.ndim - 1))))
            # In float16/bfloat16 (autocast) the weight applied is the rounded one: the loss uses that.
            record["lam"] = weight.to(torch.float32)
            if plan.layer == 0:
                record["input"] = out
            return out

        logits = forward_mixed(model, images, point=plan.layer, mix=mix, layers=self.layers, who="Manifold Mixup")
        lam = record["lam"].to(labels.device)
        batch = MixedBatch(record.get("input", images), labels, labels[plan.perm.to(labels.device)], lam)
        return logits, mixed_cross_entropy(logits, batch, label_smoothing=label_smoothing), batch

    def extra_repr(self):
        layers = "" if self.layers is None else f", layers={self.layers!r}"
        return f"alpha={self.alpha}, mode={self.mode!r}, pairing={self.pairing!r}{layers}"
