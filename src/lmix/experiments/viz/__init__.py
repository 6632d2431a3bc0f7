"""Pictures of the mixing methods: the grid that ``lmix show`` writes (the paper's Fig. 1-2)."""

from lmix.experiments.viz.grid import GridContent, build_grid_content, mixing_figure, save_figure
from lmix.experiments.viz.images import IMAGE_SUFFIXES, load_image_folder, sample_photo_batch

__all__ = [
    "GridContent",
    "build_grid_content",
    "mixing_figure",
    "save_figure",
    "IMAGE_SUFFIXES",
    "load_image_folder",
    "sample_photo_batch",
]
