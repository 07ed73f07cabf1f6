"""Relative patch position (Doersch et al. 2015): which of 8 neighbours is the second patch?"""

import dataclasses
from typing import ClassVar

from ssl_jax.augment import patches
from ssl_jax.methods.late_fusion import PatchClassification


@dataclasses.dataclass(frozen=True, kw_only=True)
class PatchPosition(PatchClassification):
    """Context prediction: 8-way classification of a neighbour patch's position.

    From each view a centre patch and one of its 8 neighbours in a 3x3 grid are cut
    (:func:`ssl_jax.augment.patches.patch_pair`; with ``grid = 2`` any cell of a 2x2 grid
    and one of the other three): cells ``patch_size`` wide and ``gap`` apart, every patch
    jittered by up to ``jitter`` px, so that neither continuing edges nor exact alignment
    give the answer away. ``net`` is the paper's late-fusion pair network
    (:class:`~ssl_jax.methods.late_fusion.LateFusionNet` with K = 2 and an MLP to 8
    classes); the loss is the cross entropy of the neighbour's label, logged as
    ``patch_position`` with its accuracy ``patch_position_acc``.

    With ``patch_norm`` each patch is normalised on its own after it is cut (as Kolesnikov
    et al. 2019 do for this task; :func:`ssl_jax.augment.patches.standardize_tiles`), and
    :meth:`encode` normalises whole images the same way (:meth:`preprocess`).

    Collapse monitors get the two patches' backbone features; the online probe the first
    patch's. :meth:`encode` returns the backbone features of whole images.

    Attributes:
      patch_size: patch side ``P`` in view pixels (paper: 96 on ~400-600 px images).
      gap: pixels between grid cells ``G`` (paper: 48, half a patch).
      jitter: per-patch jitter ``J`` (paper: up to 7 px).
      color_drop: the paper's colour dropping (keep one random channel per patch, the others
        become faint noise) against chromatic-aberration shortcuts.
      grid: 3 (the paper) or 2: cells half the view wide instead of a third, for views too
        small for a third to show an object part (32-px CIFAR images).
      patch_norm: ``'none'`` (the paper), ``'tile'`` (mean/std over the patch's pixels and
        channels) or ``'channel'`` (per channel).

    References:
      Doersch, Gupta & Efros, "Unsupervised Visual Representation Learning by Context
      Prediction", ICCV 2015 (Sec. 3, 3.1; Fig. 2 and 3); Kolesnikov, Zhai & Beyer,
      "Revisiting Self-Supervised Visual Representation Learning", CVPR 2019.
    """

    patch_size: int
    gap: int
    jitter: int
    color_drop: bool = False
    grid: int = 3
    patch_norm: str = "none"

    name: ClassVar[str] = "patch_position"

    def __post_init__(self):
        super().__post_init__()
        patches.patch_grid_size(
            patch_size=self.patch_size, gap=self.gap, jitter=self.jitter, grid=self.grid
        )
        self.check_classes(patches.NUM_POSITIONS)
        if self.patch_norm not in patches.TILE_NORMS:
            raise ValueError(
                f"patch_norm must be one of {patches.TILE_NORMS}, got {self.patch_norm!r}"
            )

    def pretext(self, key, view):
        pair, label = patches.patch_pair(
            key,
            view,
            patch_size=self.patch_size,
            gap=self.gap,
            jitter=self.jitter,
            color_drop=self.color_drop,
            grid=self.grid,
        )
        return patches.standardize_tiles(pair, mode=self.patch_norm), label

    def preprocess(self, images):
        return patches.standardize_tiles(images, mode=self.patch_norm)
