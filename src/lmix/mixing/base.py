"""The ``Mixer`` base class: parameter sampling (``sample``) separated from application (``apply``),
replayable parameters (``MixParams``), and the mixer's own random streams.

Every mixer is an ``nn.Module`` without parameters, called as
``mixer(images, labels, generator=None, *, extras=None, params=None) -> MixedBatch``:

* ``sample`` draws a batch's :class:`MixParams` (partners, lam, masks) from a ``torch.Generator``;
  ``apply`` mixes with them; ``batch.params`` holds what was drawn, and
  ``mixer(other_images, other_labels, params=batch.params)`` replays it exactly (kornia's
  ``forward(params=...)``).
* Randomness comes from an explicit generator or the mixer's own generators, one per device,
  seeded from ``seed``; the global RNG is never touched.
* Streams per process: inside a ``DataLoader`` worker each worker and epoch draws its own
  stream; inside an initialised ``torch.distributed`` process group each rank does (see
  :meth:`Mixer.generator_for`); :meth:`Mixer.fork` derives an independent copy by hand.
* State: the generators travel in ``state_dict()`` and, as ``_extra_state``, in the state dict
  of any module the mixer is a submodule of (a model, a ``LightningModule``), so frameworks
  checkpoint and restore it with no extra line.
"""

from __future__ import annotations

import copy
import inspect
import io
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from lmix._checks import is_integer
from lmix._seeds import derive_mixer_seed
from lmix.errors import LmixTypeError, LmixValueError
from lmix.mixing.batch import MixedBatch, MixParams
from lmix.mixing.sampling import sample_pairing
from lmix.mixing.validation import check_batch, check_extras, spatial_names

__all__ = ["Mixer", "MixParams", "STANDARD_APPLIES", "blend_soft", "select_into", "standard_apply"]

_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
# Distinct constants: a worker stream, a forked stream and a rank stream never coincide.
_WORKER_TAG = 0x6C6D_6978_776B
_FORK_TAG = 0x6C6D_6978_666B
_RANK_TAG = 0x6C6D_6978_726B
_WORKER_KEY = "@worker-seed="
_EXTRA_STATE = "_extra_state"  # nn.Module's key suffix for get_extra_state()


def select_into(mask: torch.Tensor, images: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``torch.where(mask, images, out)``, written into ``out`` (a fresh tensor the caller owns).

    A bitwise select on the integer views, in place and without a temporary (a fresh full-size
    buffer costs page faults on CPU): ``out ^= x; out &= ~m; out ^= x`` leaves ``x`` where ``m``
    is all ones and ``out`` elsewhere. The same bits as ``torch.where`` for every value (inf and
    NaN included, uint8 too) and several times faster on CPU, whose ``where`` kernel is slow with
    a mask broadcast over the channels.

    Args:
        mask: (B or 1, 1, *spatial) bool (or any shape that broadcasts), True where ``images`` is kept.
        images: (B, C, *spatial) of any dtype of 1, 2, 4 or 8 bytes.
        out: (B, C, *spatial) contiguous, same dtype as ``images``.
    """
    itype = _INT_OF_SIZE[images.element_size()]
    bits, source = out.view(itype), images.view(itype)
    bits ^= source
    bits &= mask.to(itype).sub_(1)  # 0 where the sample's own pixel is kept, all ones elsewhere
    bits ^= source
    return out


#: Elements per temporary when blending rows on the CPU: small enough that the allocator reuses
#: the block, instead of mapping (and page-faulting in) fresh memory for a full-batch temporary,
#: which dominated the cost of blending uint8 224x224 batches.
BLEND_CHUNK = 1 << 18


def blend_rows_into(
    out: torch.Tensor,
    images: torch.Tensor,
    rows: torch.Tensor | None,
    partners: torch.Tensor,
    lam: torch.Tensor,
) -> torch.Tensor:
    """``out[rows] = lam * images[rows] + (1 - lam) * images[partners]``, row by row.

    Floating tensors blend in their own dtype, so the weight applied is ``lam`` rounded to it;
    integer tensors (uint8 images in a collate) blend in float32 and are rounded back (a convex
    combination of integers in range stays in range). On the CPU the rows go in chunks of at
    most ``BLEND_CHUNK`` elements.

    Args:
        out: (B, ...) tensor of ``images``' dtype, written in place at ``rows``.
        images: (B, ...) the batch.
        rows: (n,) int64 rows to blend, or None for every row in order (n = B).
        partners: (n,) int64 the partner of each row.
        lam: (n,) float32 weight of each row's own image.

    Returns:
        (n,) float32 weight actually applied.
    """
    floating = images.is_floating_point()
    weight = lam.to(images.dtype) if floating else lam.to(torch.float32)
    shape = (-1,) + (1,) * (images.ndim - 1)
    n = partners.shape[0]
    step = n if images.device.type != "cpu" else max(1, BLEND_CHUNK // max(1, images[0].numel()))
    for start in range(0, n, step):
        stop = min(n, start + step)
        own = images[start:stop] if rows is None else images.index_select(0, rows[start:stop])
        other = images.index_select(0, partners[start:stop])
        w = weight[start:stop].view(shape)
        mixed = other.lerp_(own, w) if floating else other.float().lerp_(own.float(), w).round_()
        if rows is None:
            out[start:stop].copy_(mixed)  # integers: exact, the values are whole numbers in range
        else:
            out.index_put_((rows[start:stop],), mixed.to(out.dtype))  # index_copy_ is several times slower on CPU
    return weight.to(torch.float32)


def blend_soft(images: torch.Tensor, partner: torch.Tensor, weight: torch.Tensor, *, in_place: bool) -> torch.Tensor:
    """``weight * images + (1 - weight) * partner`` with per-pixel float32 weights (a soft mask).

    The weights applied are exactly the mask's float32 values: float32 and float64 tensors blend
    in their own dtype (float32 weights are exact in float64), float16/bfloat16 ones in float32
    and are rounded back once, integer ones (uint8 images) in float32 and are rounded to the
    nearest integer (a convex combination of values in range stays in range).

    Args:
        images: (B, ...) the samples' own values.
        partner: (B, ...) their partners' values, same dtype; overwritten when ``in_place``
            and the dtype is float32 or float64.
        weight: float32 weights in [0, 1] that broadcast against ``images`` (e.g. (B, 1, *spatial)).
        in_place: whether ``partner`` may be overwritten (no autograd through it).
    """
    if images.dtype in (torch.float32, torch.float64):
        w = weight.to(images.dtype)
        return partner.lerp_(images, w) if in_place else torch.lerp(partner, images, w)
    mixed = partner.float().lerp_(images.float(), weight)
    if not images.is_floating_point():
        mixed = mixed.round_()
    return mixed.to(images.dtype)


def _distributed_rank() -> int | None:
    """This process's rank in an initialised process group of more than one process, else None."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank()
    return None


def _state_to_tensor(state: dict[str, Any]) -> torch.Tensor:
    """A mixer's extra state as a (n,) uint8 tensor (its ``torch.save`` bytes)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def _state_from_tensor(blob: torch.Tensor) -> Any:
    """What ``_state_to_tensor`` encoded (loaded with ``weights_only``: tensors and plain data only)."""
    return torch.load(io.BytesIO(bytes(blob.detach().cpu().tolist())), weights_only=True)


def _new_generator(key: str, seed: int) -> torch.Generator:
    """A generator on the device named by a cache key (``"cuda:0"``, ``"cpu@worker-seed=..."``)."""
    gen = torch.Generator(device=key.split(_WORKER_KEY, 1)[0])
    gen.manual_seed(seed)
    return gen


class Mixer(nn.Module):
    """Base class of every mixing method: ``mixer(images, labels) -> MixedBatch``.

    A call is two halves: :meth:`sample` draws the batch's :class:`MixParams` from a
    ``torch.Generator`` and :meth:`apply` mixes with them; a subclass implements ``sample`` (and
    ``apply`` when it does more than select or blend). ``batch.params`` replays a call exactly:
    ``mixer(x, y, params=batch.params)``. Hyperparameters are keyword-only and validated;
    :meth:`hparams` returns them as built.

    The mixer is an ``nn.Module`` without parameters: assigned as a submodule of a model or a
    ``LightningModule`` it is saved and restored with it (``_extra_state``), and device moves
    leave its generators alone (they are created per device on first use).

    Args:
        seed: seed of the mixer's own generators (a non-negative integer); ``None`` draws one
            non-deterministically.

    Attributes:
        name: the registry name (``create_mixer(name)``).
        uses_model: True for mixers that act inside the model (PatchUp): they run the forward
            pass themselves in ``forward_loss(model, images, labels)``.
        per_rank: whether the mixer draws its own stream on every rank of a process group
            (default True; see :meth:`generator_for` and :meth:`per_rank_streams`).
    """

    name: ClassVar[str] = "base"
    #: True for mixers that act inside the model (PatchUp): the trainer then calls
    #: ``forward_loss(model, images, labels, label_smoothing=...)`` instead of mixing the input.
    uses_model: ClassVar[bool] = False
    #: True for mixers whose ``sample`` returns no mask: pixels are blended by ``lam`` (Mixup).
    blends: ClassVar[bool] = False
    #: How partners are chosen (``sampling.sample_pairing``); set by the mixers that take ``pairing``.
    pairing: str = "random"
    #: Numbers of spatial axes the mixer takes: 1 ((B, C, L) sequences), 2 ((B, C, H, W) images),
    #: 3 ((B, C, D, H, W) volumes).
    spatial_ranks: ClassVar[tuple[int, ...]] = (1, 2, 3)

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__()
        if seed is not None and (not is_integer(seed) or seed < 0):
            raise LmixValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        if seed is None:
            seed = torch.Generator().seed()  # non-deterministic, leaves the global RNG alone
        self.seed = int(seed)
        self.per_rank = True
        self.forked = False
        self.draws = 0
        self._generators: dict[str, torch.Generator] = {}
        # The rank of the process that pickled this mixer (see __getstate__).
        self._sender_rank: int | None = None

    # -- randomness ---------------------------------------------------------------------
    def generator_for(self, device: torch.device | str) -> torch.Generator:
        """The mixer's own generator on ``device``, for one batch's draws.

        * Main process, no process group: a generator seeded with ``seed`` on first use and
          advanced by every draw (one continuous stream per device).
        * Inside a ``DataLoader`` worker (``get_worker_info()`` is not None): seeded with a hash
          of ``seed`` and the worker's ``seed``, which torch derives from the DataLoader's
          generator and changes for every worker and every epoch; cached per worker seed, so a
          persistent worker keeps advancing its stream across epochs. In a process group the
          rank is hashed in too (in a worker started by spawn or forkserver, which is outside
          the group, the rank of the process the mixer was sent from).
        * Inside an initialised ``torch.distributed`` group of more than one process (DDP,
          Lightning, accelerate), unless :meth:`fork` made this mixer or ``per_rank`` is False:
          every call re-seeds the generator from ``(seed, rank, draws)`` and counts the draw.
          Each rank then draws its own stream, and the stream depends only on the number of
          draws, which every rank shares: a checkpoint written by rank 0 resumes every rank
          exactly.
        """
        key = str(torch.device(device))
        info = torch.utils.data.get_worker_info()
        rank = self._stream_rank(in_worker=info is not None)
        if info is not None:
            key = f"{key}{_WORKER_KEY}{info.seed}"
            parts = (self.seed, info.seed, _WORKER_TAG) if rank is None else (self.seed, info.seed, rank, _WORKER_TAG)
            return self._cached(key, derive_mixer_seed(*parts))
        gen = self._cached(key, self.seed)
        if rank is not None:
            gen.manual_seed(derive_mixer_seed(self.seed, rank, self.draws, _RANK_TAG))
            self.draws += 1
        return gen

    def _stream_rank(self, *, in_worker: bool) -> int | None:
        """The rank whose stream this process draws, or None for no per-rank stream."""
        if not self.per_rank or self.forked:
            return None
        rank = _distributed_rank()
        if rank is None and in_worker:
            # A DataLoader worker started by spawn or forkserver is outside the process group;
            # without the sender's rank every rank's workers would draw the same masks.
            rank = vars(self).get("_sender_rank")
        return rank

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_sender_rank"] = _distributed_rank()
        return state

    def _cached(self, key: str, seed: int) -> torch.Generator:
        gen = self._generators.get(key)
        if gen is None:
            gen = self._generators[key] = _new_generator(key, seed)
        return gen

    def per_rank_streams(self, enabled: bool = True) -> Mixer:
        """Turn per-rank streams on (the default) or off for this mixer and its components.

        Off, every rank of a process group draws the same partners, lam and masks (for the rare
        setup that wants identical mixing everywhere). Returns ``self``.
        """
        for mixer in self._tree():
            mixer.per_rank = bool(enabled)
        return self

    def fork(self, index: int) -> Mixer:
        """A copy of this mixer whose stream is independent of this one's and of other indices'.

        The copy's ``seed`` (and that of every component of a ``MixChoice``) is derived
        deterministically from ``(seed, index)``; its generators start fresh, and it draws one
        continuous stream (no per-rank re-seeding). In a process group a mixer already draws
        its own stream per rank (see :meth:`generator_for`); ``fork`` is for other uses, e.g.
        several independent mixers in one process. DataLoader workers need no fork.

        Args:
            index: a non-negative integer, e.g. the DDP rank.

        Returns:
            A new mixer of the same type and hyperparameters.
        """
        if not is_integer(index) or index < 0:
            raise LmixValueError(f"fork index must be a non-negative integer (e.g. the DDP rank), got {index!r}")
        twin = copy.deepcopy(self)
        for mixer in twin._tree():
            mixer.seed = derive_mixer_seed(mixer.seed, int(index), _FORK_TAG)
            mixer._generators = {}
            mixer.draws = 0
            mixer.forked = True
        return twin

    def _tree(self) -> list[Mixer]:
        """This mixer and the mixers it delegates to (``MixChoice``'s components)."""
        return [self]

    # -- state ----------------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        """This mixer's own random state (not its components'): seed, draws, generator states."""
        return {
            "seed": self.seed,
            "draws": self.draws,
            "generators": {k: g.get_state() for k, g in self._generators.items()},
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what ``get_extra_state`` returned (generators are recreated on their devices)."""
        if not isinstance(state, dict) or "seed" not in state or "generators" not in state:
            raise LmixValueError(f"not a mixer state (a dict with 'seed' and 'generators'), got {type(state).__name__}")
        self.seed = int(state["seed"])
        self.draws = int(state.get("draws", 0))
        self._generators = {}
        for key, gen_state in state["generators"].items():
            gen = _new_generator(key, self.seed)
            gen.set_state(gen_state.cpu() if isinstance(gen_state, torch.Tensor) else gen_state)
            self._generators[key] = gen

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        # In a parent's state dict the extra state is one uint8 tensor, not a dict: safetensors
        # (accelerate's save_state, save_pretrained) stores tensors only.
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + _EXTRA_STATE] = _state_to_tensor(destination[prefix + _EXTRA_STATE])

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        key = prefix + _EXTRA_STATE
        if isinstance(state_dict.get(key), torch.Tensor):
            state_dict = {**state_dict, key: _state_from_tensor(state_dict[key])}
        super()._load_from_state_dict(state_dict, prefix, *args)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Seed, draws and generator states, for bit-exact resume.

        Called as ``mixer.state_dict()``, the mixer's own format (what lmix has always written:
        ``{"seed", "generators", ...}``, with a ``MixChoice``'s components under ``"mixers"``).
        Called by ``nn.Module`` on a parent module, the standard entries (``_extra_state`` per
        mixer, a uint8 tensor holding ``get_extra_state()``, so that safetensors can store it),
        so that a model holding a mixer saves it.
        """
        if args or kwargs:
            return super().state_dict(*args, **kwargs)
        return self.get_extra_state()

    def load_state_dict(self, state: dict[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Restore either format of :meth:`state_dict` (lmix's own, or ``nn.Module``'s)."""
        if isinstance(state, dict) and "seed" in state:
            self.set_extra_state(state)
            return None
        return super().load_state_dict(state, strict=strict, assign=assign)

    # -- hyperparameters ------------------------------------------------------------------
    def hparams(self) -> dict[str, Any]:
        """The keyword-only hyperparameters this mixer was built with (defaults resolved; no seed).

        ``type(mixer)(**mixer.hparams(), seed=s)`` builds an equal mixer. Tuples become lists, so
        the result can be written to YAML or JSON as it is.
        """
        out: dict[str, Any] = {}
        for name, param in inspect.signature(type(self).__init__).parameters.items():
            if param.kind is inspect.Parameter.KEYWORD_ONLY and name != "seed":
                out[name] = _plain(getattr(self, name))
        return out

    def describe(self) -> dict[str, Any]:
        """``{"name": registry name, "seed": seed, **hparams()}``: what a run record states."""
        return {"name": self.name, "seed": self.seed, **self.hparams()}

    # -- the two halves -----------------------------------------------------------------
    def sample_partners(self, batch_size: int, *, device: torch.device, generator: torch.Generator) -> torch.Tensor:
        """(B,) int64 partner index of every sample, by the mixer's ``pairing``, on ``device``."""
        return sample_pairing(self.pairing, batch_size, generator=generator, device=device)

    def sample(
        self, batch_size: int, image_size: tuple[int, ...], *, device: torch.device, generator: torch.Generator
    ) -> MixParams:
        """Draw the mixing parameters for a batch of ``batch_size`` samples of spatial size ``image_size``
        ((L,), (H, W) or (D, H, W))."""
        raise NotImplementedError

    def draw(self, images: torch.Tensor, generator: torch.Generator | None = None) -> MixParams:
        """The parameters a call on ``images`` (B, C, *spatial) would use, drawn as a call draws them.

        From ``generator`` or the mixer's own generator for ``images.device``; advances the same
        streams as a call. ``apply(images, labels, params)`` then mixes (a compiled training step
        draws eagerly and compiles ``apply``).
        """
        if generator is None:
            generator = self.generator_for(images.device)
        return self.sample(images.shape[0], tuple(images.shape[2:]), device=images.device, generator=generator)

    def apply(self, images: torch.Tensor, labels: torch.Tensor, params: MixParams) -> MixedBatch:
        """Mix (B, C, *spatial) ``images`` and (B, ...) ``labels`` with sampled ``params``.

        ``images`` may also be integer (uint8 batches in a collate): masks select, blends round.
        ``labels`` only need a batch dimension (class indices, soft or multi-label targets).
        """
        if params.erase:
            mixed = images * params.mask.to(images.dtype)
            return MixedBatch(mixed, labels, labels, params.lam, params=params)
        lam = params.lam
        if params.mask is None and not images.is_floating_point():
            mixed = torch.empty_like(images)
            lam = blend_rows_into(mixed, images, None, params.perm, lam)
            return MixedBatch(mixed, labels, labels.index_select(0, params.perm), lam, params=params)
        # index_select, not images[perm]: the same copy, several times faster on CPU.
        partner = images.index_select(0, params.perm)
        # Without autograd the partner copy is ours: mix into it instead of allocating again.
        in_place = not (images.requires_grad and torch.is_grad_enabled())
        if params.mask is None:
            weight = lam.to(images.dtype)
            shape = (-1,) + (1,) * (images.ndim - 1)
            if in_place:
                mixed = partner.lerp_(images, weight.view(shape))
            else:
                mixed = torch.lerp(partner, images, weight.view(shape))
            # In float16/bfloat16 the weight actually applied is the rounded one: report that.
            lam = weight.to(torch.float32)
        elif params.mask.dtype != torch.bool:
            mixed = blend_soft(images, partner, params.mask, in_place=in_place)
        elif in_place and images.device.type == "cpu":
            mixed = select_into(params.mask, images, partner)
        else:
            mixed = torch.where(params.mask, images, partner)
        return MixedBatch(mixed, labels, labels.index_select(0, params.perm), lam, params=params)

    def apply_extra(self, tensor: torch.Tensor, params: MixParams) -> torch.Tensor:
        """Mix an extra tensor (segmentation map, depth, ...) like the images were mixed.

        ``mixer(..., extras=[...])`` calls it for every extra. Mask methods (CutMix, LMix, FMix)
        take each pixel from the sample or its partner as the images' mask does; with soft masks
        (``max_soft > 0``) floating tensors blend with the mask's weights and integer ones (class
        maps) take each pixel from the sample where its weight is above 1/2 (exactly the binary
        mask of the same draw) and from the partner elsewhere. Mixup blends floating tensors with
        the same weight and rejects integer ones (a blend of class indices is meaningless: pass
        one-hot or soft maps); Cutout multiplies floating tensors by its mask and leaves integer
        ones (labels) unchanged; ``none`` returns the tensor unchanged. LMix's ``image_k``
        sharpening is for images only and is not applied to extras.

        Args:
            tensor: (B, ..., *spatial) of any dtype (floating required for Mixup), on the device
                of ``params``.
            params: what ``sample`` returned for the batch.

        Returns:
            A new tensor of ``tensor``'s shape and dtype (``tensor`` itself where unchanged).
        """
        if not standard_apply(self) and type(self).apply_extra is Mixer.apply_extra:
            raise NotImplementedError(
                f"{type(self).__name__} overrides apply but not apply_extra: extras cannot be mixed like its images"
            )
        b = params.perm.shape[0]
        mask = params.mask
        d = 0 if mask is None else mask.ndim - 2
        names = "" if mask is None else spatial_names(d)
        if tensor.ndim < max(2, d + 1) or tensor.shape[0] != b:
            shape = "(B, ...)" if mask is None else f"(B, ..., {names})"
            raise LmixValueError(f"an extra tensor must have shape {shape} with B = {b}, got {tuple(tensor.shape)}")
        ones = (1,) * (tensor.ndim - 1)
        if mask is not None:
            spatial = tuple(mask.shape[2:])
            if tuple(tensor.shape[tensor.ndim - d :]) != spatial:
                raise LmixValueError(
                    f"an extra tensor must have the images' ({names}) = {spatial}, got shape {tuple(tensor.shape)}"
                )
            mask = mask.reshape(mask.shape[0], *ones[: tensor.ndim - 1 - d], *spatial)
        if params.erase:
            return tensor * mask.to(tensor.dtype) if tensor.is_floating_point() else tensor
        partner = tensor.index_select(0, params.perm)
        if mask is not None and mask.dtype != torch.bool:
            if tensor.is_floating_point():
                return blend_soft(
                    tensor, partner, mask, in_place=not (tensor.requires_grad and torch.is_grad_enabled())
                )
            return torch.where(mask > 0.5, tensor, partner)
        if mask is not None:
            return torch.where(mask, tensor, partner)
        if not tensor.is_floating_point():
            raise LmixValueError(
                f"{type(self).__name__} blends pixels and cannot mix an integer extra tensor (dtype {tensor.dtype}); "
                "pass a floating one (e.g. one-hot or soft maps) or use a mask method (cutmix, lmix, fmix)"
            )
        return torch.lerp(partner, tensor, params.lam.to(tensor.dtype).view(b, *ones))

    def check_params(self, params: object, images: torch.Tensor) -> MixParams:
        """``params`` if they can replay on ``images`` (B, C, *spatial): this mixer's kind, B samples, the
        same spatial size."""
        if not isinstance(params, MixParams):
            raise LmixTypeError(
                f"params must be the MixParams of a batch this mixer made (batch.params), got {type(params).__name__}"
            )
        b, size = images.shape[0], tuple(images.shape[2:])
        if params.perm.shape[0] != b:
            raise LmixValueError(f"params were drawn for {params.perm.shape[0]} samples, the images have {b}")
        if params.mask is not None and tuple(params.mask.shape[2:]) != size:
            raise LmixValueError(f"params were drawn for images of {tuple(params.mask.shape[2:])}, these are {size}")
        if params.perm.device != images.device:
            raise LmixValueError(f"params are on {params.perm.device}, the images on {images.device}")
        return params

    def forward(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator | None = None,
        *,
        extras: Sequence[torch.Tensor] | None = None,
        params: MixParams | None = None,
    ) -> MixedBatch:
        """Mix a batch.

        Args:
            images: (B, C, L) sequences, (B, C, H, W) images or (B, C, D, H, W) volumes (those of
                ``spatial_ranks``), floating point, any device; every spatial side >= 2.
            labels: (B,) integer class indices on the same device.
            generator: source of randomness; default: the mixer's own for ``images.device``.
            extras: tensors shaped (B, ..., *spatial) (e.g. (B, H, W) int64 segmentation maps or
                (B, C, H, W) float maps) mixed with the same partners and masks, see
                ``apply_extra``.
            params: replay these parameters (``batch.params`` of an earlier call, for a batch of
                the same size and spatial size) instead of drawing new ones; nothing random is drawn.

        Returns:
            ``MixedBatch`` with images of the input's shape, (B,) labels_a, labels_b, lam, the
            mixed ``extras`` in order, and ``params``.
        """
        images, labels = self.check_batch(images, labels)
        extras = check_extras(extras, images)
        params = self.draw(images, generator) if params is None else self.check_params(params, images)
        batch = self.apply(images, labels, params)
        if extras:
            batch.extras = tuple(self.apply_extra(t, params) for t in extras)
        return batch

    def check_batch(self, images: object, labels: object) -> tuple[torch.Tensor, torch.Tensor]:
        """``validation.check_batch`` with the shapes this mixer takes (``spatial_ranks``)."""
        ranks = self.spatial_ranks
        return check_batch(images, labels, ranks=ranks, who=None if ranks == (1, 2, 3) else type(self).__name__)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


def _plain(value: Any) -> Any:
    """A hyperparameter as YAML/JSON writes it: tuples as lists, mixers described."""
    if isinstance(value, Mixer):
        return value.describe()
    if isinstance(value, (tuple, list, nn.ModuleList)):
        return [_plain(v) for v in value]
    return value


#: ``apply`` methods that mix with a mask or a per-sample weight only (``Mixer.apply_extra``
#: and ``MixChoice(mode="sample")`` rely on that). Subclasses register theirs by appending.
STANDARD_APPLIES: list[Any] = [Mixer.apply]


def standard_apply(mixer: Mixer) -> bool:
    """Whether ``mixer`` mixes the input with the standard mask/blend ``apply`` (or a registered one)."""
    return type(mixer).apply in STANDARD_APPLIES and not mixer.uses_model
