"""Pictures of the mixing methods: the grid that ``lmix show`` writes (the paper's Fig. 1-2), for
images, sequences (strips and line plots) and volumes (slices along depth)."""

from lmix.experiments.viz.grid import (
    GridContent,
    build_grid_content,
    check_mask_options,
    mix_every_method,
    mixing_figure,
    save_figure,
)
from lmix.experiments.viz.images import IMAGE_SUFFIXES, load_image_folder, sample_clip_batch, sample_photo_batch
from lmix.experiments.viz.sequences import (
    SequenceContent,
    build_sequence_content,
    sample_sequence_batch,
    sequence_figure,
)
from lmix.experiments.viz.volumes import build_volume_content, depth_slices

__all__ = [
    "GridContent",
    "build_grid_content",
    "check_mask_options",
    "mix_every_method",
    "mixing_figure",
    "save_figure",
    "IMAGE_SUFFIXES",
    "load_image_folder",
    "sample_clip_batch",
    "sample_photo_batch",
    "SequenceContent",
    "build_sequence_content",
    "sample_sequence_batch",
    "sequence_figure",
    "build_volume_content",
    "depth_slices",
]
