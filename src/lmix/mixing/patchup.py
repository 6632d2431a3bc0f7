"""PatchUp (Faramarzi et al. 2020): mix contiguous blocks of hidden feature maps between samples.

Reference: chandar-lab/PatchUp (``modules/patchup.py``, ``models/preresnet.py``, ``main.py``).
What the reference does and how lmix expresses it:

* **Layer.** Per batch, with probability ``patchup_prob`` (``main.py``, ``train()``: ``r <
  args.patchup_prob``) a hook layer ``k ~ U{0, ..., max_layer}`` is drawn
  (``preresnet.py``, ``forward``: ``layer_mix = random.randint(0, k)``, ``--k`` default 2). Hook
  point 0 is the input image, where the reference applies **CutMix** with Beta(1, 1) instead of
  PatchUp (``if layer_mix == 0 and patchup: cutmix = CutMix(beta=1.)``); points ``i >= 1`` are the
  outputs of the model's stages (PreAct-ResNet: 1 after the stem conv, 2 after ``layer1``, ...,
  the reference's indices). Otherwise the batch is trained with plain cross-entropy.
* **Mask** (``modules/patchup.py``, ``adjust_gamma`` l. ~53 and ``forward`` l. ~86-114): seeds
  ``~ Bernoulli(gamma_adj)`` at every feature (every channel and position), each grown to a
  ``block_size`` square by ``max_pool2d(kernel=block_size, stride=1, padding=block_size // 2)``
  (blocks are clipped at the border); ``holes`` = 1 in the blocks. ``gamma_adj = gamma * H * W /
  (bh * bw * (H - bh + 1) * (W - bw + 1))`` with ``bh = min(block_size, H)``, ``bw = min(block_size,
  W)``: the reference's ``gamma * W**2 / (block_size**2 * (W - block_size + 1)**2)`` for square maps
  no smaller than the block, clamped to [0, 1]. The reference draws one (C, h, w) pattern for
  the whole batch (``mode="batch"``, the default here); ``mode="sample"`` draws one per sample.
  At hidden layers every channel has its own pattern, as in the reference; on images (hook point
  0) one pattern is shared by the channels, so a pixel moves as a whole.
* **Mix** (l. ~121-134): hard: ``x' = (1 - holes) * x + holes * x[perm]``; soft: ``x' = (1 - holes)
  * x + holes * (m * x + (1 - m) * x[perm])`` with ``m ~ Beta(alpha, alpha)`` (l. ~84: the
  reference fixes ``np.random.beta(2.0, 2.0)``; ``alpha = 2`` here).
* **Targets** (l. ~112-133): ``u`` = share of unchanged features (``total_unchanged_portion``),
  ``m = 0`` for hard PatchUp and for the CutMix of hook point 0 (where ``u`` is the area kept)::

      t_a  = onehot(y)
      t_b  = m * onehot(y) + (1 - m) * onehot(y[perm])                  (hard: onehot(y[perm]))
      t_rw = (u + m (1 - u)) * onehot(y) + (1 - m)(1 - u) * onehot(y[perm])

* **Loss** (``main.py``, ``train()``, the ``patchup`` branch, ``--loss_params`` = (w_a, w_b)
  default (1, 1))::

      L = w_a * u * CE(out, t_a) + (1 - u) * CE(out, t_b) + w_b * CE(out, t_rw)

  The reference takes ``BCELoss(softmax(out), t)`` for each term; lmix takes the cross-entropy
  with soft targets (``-sum t log softmax(out)``, optionally label-smoothed), like its other
  methods. Both are linear in the target, so with the default weights ``L = 2 * CE(out, t_rw)``: a
  mixed batch weighs twice an unmixed one (plain ``CE(out, y)``), as in the reference, where
  the three BCE terms add up to ``2 * BCE(out, t_rw)`` in the same way (for any weights: ``W =
  w_a u + (1 - u) + w_b`` times one loss with the combined target, under either loss; see
  ``docs/method.md``, PatchUp). ``loss_scale="single"`` divides by ``W``: one mixed cross-entropy, the
  scale of the other methods' batches.
  ``MixedBatch.lam`` is the share of ``y`` in the combined target, ``c_a / (c_a + c_b)`` for
  ``L = c_a CE(out, y) + c_b CE(out, y[perm])`` (``u + m (1 - u)`` with the default weights).

Differences from the reference, all deliberate: the adjusted rate is computed from each feature
map's own size at every call (the reference caches it per module on first use; the PreAct-ResNet
code also reuses ``patchup_0``, block size 7, at every layer, while the WRN code uses blocks 7, 5
and 3 at points 1-3); every random draw comes from the mixer's own generators, never numpy's or
torch's global RNG.

Any model: ``layers=("conv1", "layer1")`` names the submodules whose outputs are hook points 1,
2, ... of any ``nn.Module`` (forward hooks, ``lmix.mixing.hidden``); ``layers=None`` (the default)
takes the stages of an ``lmix.models.StagedNet``.

``PatchUp.__call__`` (the generic ``Mixer`` interface: ``sample`` + ``apply``) is PatchUp's
block mixing on the images themselves (hook point 0, one pattern shared by the channels), always
applied; ``forward_loss`` is the training procedure above (``patchup_prob``, the layer draw, the
CutMix at point 0 and the loss) and is what ``lmix train --method patchup`` uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lmix._checks import check_probability, is_finite_real, is_integer, is_real
from lmix.errors import LmixValueError
from lmix.mixing.base import Mixer
from lmix.mixing.batch import MixedBatch, MixParams
from lmix.mixing.hidden import check_layers, forward_mixed, num_hook_points, plan_generators
from lmix.mixing.mixers import CutMix
from lmix.mixing.sampling import sample_beta_lams, sample_permutation
from lmix.mixing.validation import check_alpha, check_mode, check_positive

__all__ = [
    "PatchUp",
    "PatchUpParams",
    "PatchUpPlan",
    "adjusted_gamma",
    "block_holes",
    "grow_blocks",
    "patchup_loss",
    "patchup_target_weights",
]

PATCHUP_TYPES = ("hard", "soft")
LOSS_SCALES = ("reference", "single")
INPUT_MIXES = ("cutmix", "patchup")


# -- the mask ---------------------------------------------------------------------------------


def adjusted_gamma(gamma: float, block_size: int, size: tuple[int, int]) -> float:
    """Seed rate that makes blocks cover about ``gamma`` of an (H, W) map (DropBlock's formula).

    ``gamma * H * W / (bh * bw * (H - bh + 1) * (W - bw + 1))`` with the block clipped to the map
    (``bh = min(block_size, H)``, ``bw = min(block_size, W)``), clamped to [0, 1].
    """
    h, w = size
    bh, bw = min(block_size, h), min(block_size, w)
    return min(1.0, gamma * h * w / (bh * bw * (h - bh + 1) * (w - bw + 1)))


def grow_blocks(seeds: torch.Tensor, block_size: int) -> torch.Tensor:
    """Grow every seed into a ``block_size`` square centred on it, clipped at the border.

    Args:
        seeds: (N, C, H, W) bool or 0/1 float.
        block_size: side of the squares, >= 1 (a square spans ``block_size // 2`` rows/columns
            after the seed and the rest before it: an even side is one shorter before, as
            ``max_pool2d`` with ``padding = block_size // 2`` gives).

    Returns:
        (N, C, H, W) bool, True inside a block.
    """
    h, w = seeds.shape[-2:]
    pad = block_size // 2
    grown = F.max_pool2d(seeds.to(torch.float32), kernel_size=block_size, stride=1, padding=pad)
    return grown[..., :h, :w] > 0


def block_holes(
    n: int,
    shape: tuple[int, int, int],
    *,
    gamma: float,
    block_size: int,
    generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """(n, C, H, W) bool masks of PatchUp's blocks (True: the feature is mixed).

    Seeds ``~ Bernoulli(adjusted_gamma(gamma, block_size, (H, W)))`` at every feature, drawn with
    ``generator`` on its device, grown by ``grow_blocks``.
    """
    c, h, w = shape
    rate = adjusted_gamma(gamma, block_size, (h, w))
    seeds = torch.rand((n, c, h, w), generator=generator, device=generator.device) < rate
    return grow_blocks(seeds.to(device), block_size)


# -- targets and loss -------------------------------------------------------------------------


def patchup_target_weights(
    unchanged: torch.Tensor, mix_lam: torch.Tensor | None, loss_weights: tuple[float, float] = (1.0, 1.0)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients ``(c_a, c_b)`` of ``L = c_a CE(out, y) + c_b CE(out, y[perm])`` (per sample).

    ``L = w_a u CE(t_a) + (1 - u) CE(t_b) + w_b CE(t_rw)`` expands to
    ``c_a = w_a u + (1 - u) m + w_b (u + m (1 - u))`` and ``c_b = (1 + w_b)(1 - u)(1 - m)``.

    Args:
        unchanged: (B,) share ``u`` of unchanged features.
        mix_lam: (B,) soft-PatchUp weight ``m`` of the own sample in the blocks; None for hard (m = 0).
        loss_weights: ``(w_a, w_b)``, the reference's ``--loss_params``.

    Returns:
        (B,) float32 ``c_a`` and ``c_b``.
    """
    u = unchanged.to(torch.float32)
    m = torch.zeros_like(u) if mix_lam is None else mix_lam.to(device=u.device, dtype=torch.float32)
    w_a, w_b = loss_weights
    c_a = w_a * u + (1 - u) * m + w_b * (u + m * (1 - u))
    c_b = (1 + w_b) * (1 - u) * (1 - m)
    return c_a, c_b


def patchup_loss(
    logits: torch.Tensor,
    labels_a: torch.Tensor,
    labels_b: torch.Tensor,
    unchanged: torch.Tensor,
    mix_lam: torch.Tensor | None,
    *,
    loss_weights: tuple[float, float] = (1.0, 1.0),
    label_smoothing: float = 0.0,
    normalize: bool = False,
) -> torch.Tensor:
    """PatchUp's loss ``mean_i [w_a u CE(t_a) + (1 - u) CE(t_b) + w_b CE(t_rw)]`` (module docstring).

    Computed from the two hard-label cross-entropies ``CE(out, y)`` and ``CE(out, y[perm])``,
    which every soft-target term is a convex combination of.

    Args:
        logits: (B, K) raw scores (any float dtype; the loss is computed in float32).
        labels_a, labels_b: (B,) the samples' labels and their partners'.
        unchanged, mix_lam, loss_weights: see ``patchup_target_weights``.
        label_smoothing: in [0, 1], applied to every target as in ``F.cross_entropy``.
        normalize: divide each sample's loss by its total weight ``c_a + c_b = w_a u + (1 - u) +
            w_b`` (2 with the default weights): one mixed cross-entropy with the combined target.

    Returns:
        Scalar float32 loss.
    """
    logits = logits.float()
    ce_a = F.cross_entropy(logits, labels_a.long(), reduction="none", label_smoothing=label_smoothing)
    ce_b = F.cross_entropy(logits, labels_b.long(), reduction="none", label_smoothing=label_smoothing)
    c_a, c_b = patchup_target_weights(unchanged.to(logits.device), mix_lam, loss_weights)
    per_sample = c_a * ce_a + c_b * ce_b
    if normalize:
        total = c_a + c_b
        per_sample = torch.where(total > 0, per_sample / total.clamp_min(1e-12), torch.zeros_like(per_sample))
    return per_sample.mean()


# -- the mixer --------------------------------------------------------------------------------


@dataclass
class PatchUpParams(MixParams):
    """``MixParams`` for PatchUp on images.

    Attributes:
        mix_lam: (B,) soft PatchUp's weight of the own sample inside the blocks; None for hard.
        (``mask``: (B or 1, 1, H, W) bool, True outside the blocks; ``lam``: (B,) share of the
        own label, ``u + m (1 - u)``.)
    """

    mix_lam: torch.Tensor | None = None


@dataclass
class PatchUpPlan:
    """What ``forward_loss`` drew for one batch before running the model.

    Attributes:
        mixed: whether the batch is mixed (probability ``patchup_prob``).
        layer: hook point to mix at (0: the input image), None when not mixed.
        perm: (B,) partner indices (identity when not mixed).
        mix_lam: (B,) soft PatchUp weights ``m`` (None for hard, for CutMix at point 0 and when
            not mixed).
    """

    mixed: bool
    layer: int | None
    perm: torch.Tensor
    mix_lam: torch.Tensor | None


def _check_int(value: object, *, name: str, minimum: int) -> int:
    if not is_integer(value) or value < minimum:
        raise LmixValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class PatchUp(Mixer):
    """PatchUp: swap (hard) or interpolate (soft) random blocks of hidden features between samples.

    See the module docstring for the procedure, its targets and loss, and the reference lines.

    Args:
        alpha: Beta(alpha, alpha) of soft PatchUp's weight ``m``, > 0 (the reference fixes 2).
        patchup_prob: probability that ``forward_loss`` mixes a batch, in [0, 1].
        gamma: target share of mixed features, in (0, 1].
        block_size: side of the blocks, an integer >= 1 (the reference uses odd sizes, 7).
        patchup_type: ``"soft"`` (interpolate the blocks; the reference's default) or ``"hard"`` (swap them).
        max_layer: ``forward_loss`` draws the hook point uniformly from ``{0, ...,
            min(max_layer, num_hook_points - 1)}``, an integer >= 0 or None for every hook point
            (the reference's ``--k``, default 2: input, after the stem, after the first stage).
            With ``layers`` the hook points are the input and the named layers: pass
            ``max_layer=None`` to draw from all of them.
        input_mix: at hook point 0, ``"cutmix"`` (the reference: CutMix with Beta(``cutmix_alpha``))
            or ``"patchup"`` (block mixing of the images, as ``__call__`` does).
        cutmix_alpha: Beta concentration of the CutMix box at hook point 0, > 0 (reference: 1).
        loss_weights: ``(w_a, w_b)`` of the loss, each >= 0 (the reference's ``--loss_params``).
        loss_scale: ``"reference"`` (the sum of the three terms: a mixed batch weighs ``w_a u +
            (1 - u) + w_b`` = 2 times one mixed cross-entropy with its combined target, relative to
            an unmixed batch and to the other methods exactly as under the reference's BCE loss)
            or ``"single"`` (divided by that weight: one mixed cross-entropy, the scale of every
            other method's batch).
        mode: ``"batch"`` (the reference: one block pattern, ``m`` and CutMix box per batch) or
            ``"sample"`` (one per sample).
        layers: None (the model is an ``lmix.models.StagedNet``: hook point ``i`` is the output of
            ``stages[i - 1]``) or the names, as in ``model.named_modules()``, of the submodules of
            any model whose (B, C, H, W) outputs may be mixed: hook point ``i`` is the output of
            ``layers[i - 1]``, 0 the input (``lmix.mixing.hidden``). E.g. ``("conv1", "layer1")``
            for torchvision's ``resnet18`` (the reference's points 1 and 2 on its PreAct-ResNet).
        seed: seed of the mixer's own generators.
    """

    name = "patchup"
    #: Block masks of 2-D feature maps: (B, C, H, W) images only.
    spatial_ranks = (2,)
    uses_model = True

    def __init__(
        self,
        *,
        alpha: float = 2.0,
        patchup_prob: float = 0.7,
        gamma: float = 0.5,
        block_size: int = 7,
        patchup_type: str = "soft",
        max_layer: int | None = 2,
        input_mix: str = "cutmix",
        cutmix_alpha: float = 1.0,
        loss_weights: Sequence[float] = (1.0, 1.0),
        mode: str = "batch",
        layers: Sequence[str] | None = None,
        loss_scale: str = "reference",
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        self.alpha = check_alpha(alpha)
        self.patchup_prob = check_probability(patchup_prob, name="patchup_prob")
        if not is_real(gamma) or not 0.0 < float(gamma) <= 1.0:
            raise LmixValueError(f"gamma must be a number in (0, 1] (the share of features to mix), got {gamma!r}")
        self.gamma = float(gamma)
        self.block_size = _check_int(block_size, name="block_size", minimum=1)
        if patchup_type not in PATCHUP_TYPES:
            raise LmixValueError(
                f"patchup_type must be 'hard' (swap blocks) or 'soft' (interpolate), got {patchup_type!r}"
            )
        self.patchup_type = str(patchup_type)
        self.max_layer = None if max_layer is None else _check_int(max_layer, name="max_layer", minimum=0)
        if input_mix not in INPUT_MIXES:
            raise LmixValueError(f"input_mix must be 'cutmix' (the reference) or 'patchup', got {input_mix!r}")
        self.input_mix = str(input_mix)
        self.cutmix_alpha = check_positive(cutmix_alpha, name="cutmix_alpha")
        if (
            isinstance(loss_weights, (str, bytes))
            or not isinstance(loss_weights, Sequence)
            or len(loss_weights) != 2
            or not all(is_finite_real(v) and v >= 0 for v in loss_weights)
        ):
            raise LmixValueError(f"loss_weights must be a pair (w_a, w_b) of finite numbers >= 0, got {loss_weights!r}")
        self.loss_weights = (float(loss_weights[0]), float(loss_weights[1]))
        self.mode = check_mode(mode)
        self.layers = check_layers(layers)
        if loss_scale not in LOSS_SCALES:
            raise LmixValueError(
                "loss_scale must be 'reference' (the reference's three-term sum, about 2x one mixed loss) or "
                f"'single' (normalised to one mixed cross-entropy), got {loss_scale!r}"
            )
        self.loss_scale = str(loss_scale)
        # Only its sample() is used, always with an explicit generator: it holds no state of its own.
        self._cutmix = CutMix(alpha=self.cutmix_alpha, mode=self.mode, seed=0)

    # -- block mixing of one tensor ---------------------------------------------------------
    def _holes(self, x: torch.Tensor, *, shared_channels: bool, generator: torch.Generator) -> torch.Tensor:
        """(B or 1, C or 1, h, w) bool blocks for features ``x`` (B, C, h, w)."""
        b, c, h, w = x.shape
        n = b if self.mode == "sample" else 1
        shape = (1 if shared_channels else c, h, w)
        return block_holes(n, shape, gamma=self.gamma, block_size=self.block_size, generator=generator, device=x.device)

    def mix_features(
        self,
        x: torch.Tensor,
        perm: torch.Tensor,
        mix_lam: torch.Tensor | None,
        *,
        generator: torch.Generator,
        shared_channels: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Block-mix features ``x`` with their partners ``x[perm]``.

        Args:
            x: (B, C, h, w) features (or images).
            perm: (B,) partner indices.
            mix_lam: (B,) soft weights ``m`` (own share inside the blocks); None for hard PatchUp.
            generator: source of the block seeds.
            shared_channels: one block pattern for all channels (images) instead of one per channel.

        Returns:
            Mixed (B, C, h, w) features; (B,) float32 share ``u`` of unchanged features; the
            (B or 1, C or 1, h, w) bool holes (True where mixed).
        """
        if x.ndim != 4:
            raise LmixValueError(f"PatchUp mixes (B, C, H, W) feature maps, got shape {tuple(x.shape)}")
        holes = self._holes(x, shared_channels=shared_channels, generator=generator)
        partner = x[perm]
        if mix_lam is None:
            mixed = torch.where(holes, partner, x)
        else:
            weight = mix_lam.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)
            mixed = torch.where(holes, torch.lerp(partner, x, weight), x)
        unchanged = 1.0 - holes.to(torch.float32).mean(dim=(1, 2, 3))
        return mixed, unchanged.expand(x.shape[0]).contiguous(), holes

    # -- the generic Mixer interface: block mixing of images --------------------------------
    def sample(self, batch_size, image_size, *, device, generator):
        """Blocks shared by the channels, partners and (soft) weights for a batch of images."""
        perm = sample_permutation(batch_size, generator=generator, device=device)
        soft = self.patchup_type == "soft"
        mix_lam = (
            sample_beta_lams(self.alpha, self.mode, batch_size, device=device, generator=generator) if soft else None
        )
        n = batch_size if self.mode == "sample" else 1
        holes = block_holes(
            n, (1, *image_size), gamma=self.gamma, block_size=self.block_size, generator=generator, device=device
        )
        keep = ~holes
        unchanged = keep.to(torch.float32).mean(dim=(1, 2, 3)).expand(batch_size).contiguous()
        lam = unchanged if mix_lam is None else unchanged + mix_lam * (1 - unchanged)
        return PatchUpParams(perm=perm, lam=lam, mask=keep, mix_lam=mix_lam)

    def apply(self, images, labels, params):
        mix_lam = getattr(params, "mix_lam", None)
        if mix_lam is None:
            return super().apply(images, labels, params)
        weight = mix_lam.to(images.dtype)
        partner = images[params.perm]
        mixed = torch.where(params.mask, images, torch.lerp(partner, images, weight.view(-1, 1, 1, 1)))
        # Report the weight actually applied in float16/bfloat16, as Mixup does.
        m = weight.to(torch.float32)
        unchanged = params.mask.to(torch.float32).mean(dim=(1, 2, 3)).expand(images.shape[0])
        return MixedBatch(mixed, labels, labels[params.perm], unchanged + m * (1 - unchanged), params=params)

    # -- training: hidden-layer mixing ------------------------------------------------------
    def plan(
        self,
        batch_size: int,
        num_hook_points: int,
        *,
        device: torch.device,
        generator: torch.Generator | None = None,
    ) -> PatchUpPlan:
        """Draw whether to mix, the hook point, the partners and the soft weights for a batch, from
        ``generator`` or the mixer's own (``lmix.mixing.hidden.plan_generators``)."""
        control, tensors = plan_generators(self, generator, device)
        top = num_hook_points - 1 if self.max_layer is None else min(self.max_layer, num_hook_points - 1)
        r = float(torch.rand((), generator=control, device=control.device))
        layer = int(torch.randint(0, top + 1, (), generator=control, device=control.device))
        if r >= self.patchup_prob:
            return PatchUpPlan(False, None, torch.arange(batch_size, device=device), None)
        perm = sample_permutation(batch_size, generator=tensors, device=device)
        soft = self.patchup_type == "soft" and not (layer == 0 and self.input_mix == "cutmix")
        mix_lam = (
            sample_beta_lams(self.alpha, self.mode, batch_size, device=device, generator=tensors) if soft else None
        )
        return PatchUpPlan(True, layer, perm, mix_lam)

    def hook(
        self, plan: PatchUpPlan, *, generator: torch.Generator | None = None
    ) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, Any]]:
        """The mixing function for hook point ``plan.layer`` (``model(x, hook=..., hook_at=plan.layer)``
        or ``lmix.mixing.hidden.forward_mixed``), and a dict it fills.

        After the forward pass the dict holds ``unchanged`` ((B,) float32 ``u``), ``holes``
        ((B or 1, C or 1, h, w) bool, True where mixed) and ``input`` (the model's input after
        mixing at point 0, else absent).
        """
        record: dict[str, Any] = {}

        def mix(h: torch.Tensor) -> torch.Tensor:
            gen = generator if generator is not None else self.generator_for(h.device)
            if plan.layer == 0 and self.input_mix == "cutmix":
                b = h.shape[0]
                box = self._cutmix.sample(b, tuple(h.shape[-2:]), device=h.device, generator=gen)
                out = torch.where(box.mask, h, h[plan.perm])
                record["unchanged"], record["holes"] = box.lam, ~box.mask
            else:
                out, record["unchanged"], record["holes"] = self.mix_features(
                    h, plan.perm, plan.mix_lam, generator=gen, shared_channels=plan.layer == 0
                )
            if plan.layer == 0:
                record["input"] = out
            return out

        return mix, record

    def forward_loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        label_smoothing: float = 0.0,
        generator: torch.Generator | None = None,
        plan: PatchUpPlan | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, MixedBatch]:
        """One PatchUp training forward pass: draw a plan, run the model with its hook, the loss.

        Args:
            model: a ``lmix.models.StagedNet`` (possibly inside DDP or ``torch.compile``), or any
                module whose submodules ``layers`` names.
            images: (B, C, H, W) floating point.
            labels: (B,) integer class indices.
            label_smoothing: in [0, 1], applied to every target.
            generator: source of all randomness (default: the mixer's own generators).
            plan: use this plan instead of drawing one (tests, analysis).

        Returns:
            (B, K) logits, the scalar float32 loss, and a ``MixedBatch`` (model input, ``labels``,
            partners' labels, share of ``labels`` in the targets) for the training accuracy.
        """
        images, labels = self.check_batch(images, labels)
        check_probability(label_smoothing, name="label_smoothing")
        num_points = num_hook_points(model, self.layers, who="PatchUp")
        b = images.shape[0]
        if plan is None:
            plan = self.plan(b, num_points, device=images.device, generator=generator)
        if not plan.mixed:
            logits = model(images)
            loss = F.cross_entropy(logits.float(), labels.long(), label_smoothing=label_smoothing)
            ones = torch.ones(b, device=images.device)
            return logits, loss, MixedBatch(images, labels, labels, ones)
        hook, record = self.hook(plan, generator=generator)
        logits = forward_mixed(model, images, point=plan.layer, mix=hook, layers=self.layers, ndim=4, who="PatchUp")
        labels_b = labels[plan.perm]
        u = record["unchanged"]
        loss = patchup_loss(
            logits,
            labels,
            labels_b,
            u,
            plan.mix_lam,
            loss_weights=self.loss_weights,
            label_smoothing=label_smoothing,
            normalize=self.loss_scale == "single",
        )
        c_a, c_b = patchup_target_weights(u, plan.mix_lam, self.loss_weights)
        total = c_a + c_b
        lam = torch.where(total > 0, c_a / total.clamp_min(1e-12), torch.ones_like(total))
        return logits, loss, MixedBatch(record.get("input", images), labels, labels_b, lam)

    def extra_repr(self):
        return (
            f"alpha={self.alpha}, patchup_prob={self.patchup_prob}, gamma={self.gamma}, "
            f"block_size={self.block_size}, patchup_type={self.patchup_type!r}, max_layer={self.max_layer}, "
            f"input_mix={self.input_mix!r}, cutmix_alpha={self.cutmix_alpha}, loss_weights={self.loss_weights}, "
            f"mode={self.mode!r}"
            + ("" if self.layers is None else f", layers={self.layers!r}")
            + ("" if self.loss_scale == "reference" else f", loss_scale={self.loss_scale!r}")
        )
