"""lmix in timm (needs the ``timm`` extra).

* :mod:`lmix.integrations.timm.mixup`: ``Mixup`` and ``FastCollateMixup``, subclasses of timm's
  with lmix's mixers (same arguments plus ``method=`` and its parameters), and
  ``DeviceMixLoader``, which mixes a prefetched batch on the training device.
* :mod:`lmix.integrations.timm.launch`: the launcher that runs timm's own ``train.py`` with lmix's
  mixing: ``python -m lmix.integrations.timm --method lmix -- train.py <timm args>``.
"""

from lmix.integrations.timm.launch import LauncherError, install, main
from lmix.integrations.timm.mixup import DeviceMixLoader, FastCollateMixup, Mixup, timm_mixer

__all__ = ["Mixup", "FastCollateMixup", "DeviceMixLoader", "timm_mixer", "install", "main", "LauncherError"]
