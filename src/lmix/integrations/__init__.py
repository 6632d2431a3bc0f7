"""lmix inside other training stacks.

* ``lmix.integrations.timm``: ``Mixup`` and ``FastCollateMixup`` subclasses of timm's, and a
  launcher that runs timm's own ``train.py`` with lmix's mixing
  (``python -m lmix.integrations.timm --method lmix -- train.py <timm args>``); needs the
  ``timm`` extra.
* ``lmix.transforms``: torchvision v2 batch transforms (``LMix``, ``FMix``, ``MixUp``,
  ``CutMix``, ``Cutout``).

Lightning and accelerate need no adapter: a mixer is an ``nn.Module`` whose random state is in
the state dict of any module holding it (a ``LightningModule``, a model accelerate prepares),
and ``accelerator.register_for_checkpointing(mixer)`` saves one held outside the model; in
their process groups every rank draws its own masks (see docs/integrations.md). Submodules are
imported on demand, so that ``import lmix`` never needs timm.
"""
