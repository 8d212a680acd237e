"""The built-in components, registered through the same entry-point mechanism as any plugin.

This module only names components and their config models; the factories import torch and the
numerical code when a component is actually built.
"""

from __future__ import annotations

from medfeat import hookimpl
from medfeat.builtins import (
    adam,
    aligners,
    backbones,
    block_matching,
    datasets,
    ffd,
    losses,
    optimisers,
    transforms,
)


@hookimpl
def medfeat_register_datasets(register):
    register(
        "files",
        datasets.make_files,
        config=datasets.FilesConfig,
        summary="One fixed/moving pair given by file paths, with optional landmarks, labels and mask.",
    )
    register(
        "csv-pairs",
        datasets.make_csv_pairs,
        config=datasets.CsvPairsConfig,
        summary="Registration pairs listed in a CSV file (one row per pair).",
    )
    register(
        "learn2reg",
        datasets.make_learn2reg,
        config=datasets.Learn2RegConfig,
        summary="A Learn2Reg task from its *_dataset.json: pairs of a split, masks, keypoints, label maps.",
    )
    register(
        "lung4dct",
        datasets.make_lung4dct,
        config=datasets.Lung4DCTConfig,
        summary="DIR-Lab-style 4D-CT cases: T00/T50 images with paired voxel-index landmarks.",
    )
    register(
        "breathing-phantom",
        datasets.make_breathing_phantom,
        config=datasets.PhantomConfig,
        summary="A synthetic inhale/exhale chest pair with a known deformation and exact landmarks.",
    )


@hookimpl
def medfeat_register_backbones(register):
    register(
        "intensity",
        backbones.make_intensity,
        config=backbones.IntensityConfig,
        summary="The image intensities as a one-channel feature map, optionally normalised.",
    )
    register(
        "mind-ssc",
        backbones.make_mind,
        config=backbones.MindConfig,
        summary="MIND-SSC self-similarity descriptors (12 channels, 3D, weight-free).",
    )
    register(
        "precomputed",
        backbones.make_precomputed,
        config=backbones.PrecomputedConfig,
        summary="Features computed elsewhere, read from files with their own geometry.",
    )


@hookimpl
def medfeat_register_feature_transforms(register):
    register(
        "l2-normalise",
        transforms.make_l2,
        config=transforms.NoConfig,
        summary="Unit length along channels, level by level.",
    )
    register(
        "fuse-levels",
        transforms.make_fuse,
        config=transforms.FuseConfig,
        summary="Resample levels to one grid, L2-normalise each, weight and concatenate.",
    )
    register(
        "joint-pca",
        transforms.make_pca,
        config=transforms.PCAConfig,
        summary="Project fixed+moving features onto principal axes fitted jointly (optionally masked).",
    )


@hookimpl
def medfeat_register_similarities(register):
    register(
        "ssd",
        losses.make_similarity("ssd"),
        config=losses.NoConfig,
        summary="Mean squared difference.",
        aliases=("mse",),
    )
    register(
        "ncc",
        losses.make_similarity("ncc"),
        config=losses.NoConfig,
        summary="1 - global normalised cross-correlation.",
    )
    register(
        "local-ncc",
        losses.make_local_ncc,
        config=losses.LocalNCCConfig,
        summary="1 - local normalised cross-correlation in a window of window_mm per axis.",
        aliases=("lncc",),
    )
    register(
        "cosine",
        losses.make_similarity("cosine"),
        config=losses.NoConfig,
        summary="1 - cosine similarity of feature vectors.",
    )
    register(
        "nmi",
        losses.make_nmi,
        config=losses.NMIConfig,
        summary="Negative normalised mutual information (Parzen histogram).",
        aliases=("mi",),
    )


@hookimpl
def medfeat_register_regularisers(register):
    register(
        "diffusion",
        losses.make_regulariser("diffusion"),
        config=losses.WeightConfig,
        summary="Mean squared first derivatives of the displacement (mm).",
    )
    register(
        "bending-energy",
        losses.make_regulariser("bending_energy"),
        config=losses.WeightConfig,
        summary="Mean squared second derivatives of the displacement (mm).",
    )


@hookimpl
def medfeat_register_aligners(register):
    register(
        "centroids",
        aligners.make_centroids,
        config=aligners.CentroidsConfig,
        summary="Translation matching the centres of the body masks, intensities, masks or grids.",
    )
    register(
        "affine",
        aligners.make_affine,
        config=aligners.AffineConfig,
        summary="Rigid or affine fit by mutual information or correlation (SimpleITK), "
        "from the alignment so far.",
    )
    register(
        "block-matching",
        block_matching.make_block_matching,
        config=block_matching.BlockMatchingConfig,
        summary="Rigid or affine fit to MIND-SSC block matches by trimmed least squares "
        "(reg_aladin-like, any modalities), from the alignment so far.",
    )


@hookimpl
def medfeat_register_optimisers(register):
    register(
        "convex-adam",
        optimisers.make_convex_adam,
        config=optimisers.ConvexAdamConfig,
        summary="Coupled convex discrete search + Adam instance optimisation on dense features (ConvexAdam).",
    )
    register(
        "sitk-ffd",
        ffd.make_sitk_ffd,
        config=ffd.FFDConfig,
        summary="B-spline FFD via SimpleITK (NiftyReg-like baseline) on intensities: Mattes MI, "
        "or the pipeline's ssd/ncc/local-ncc/nmi similarity.",
        accepts=("similarity",),
    )
    register(
        "adam",
        adam.make_adam,
        config=adam.AdamConfig,
        summary="Control-grid displacement (B-spline or linear) optimised with Adam on features, "
        "with any similarity (default ssd) and regulariser (default diffusion).",
        accepts=("similarity", "regulariser"),
    )


@hookimpl
def medfeat_register_matchers(register):
    register(
        "feature-matcher",
        optimisers.make_matcher,
        config=optimisers.MatcherConfig,
        summary="Per-point argmax of mean per-level cosine similarity, global or in a box; memory-bounded.",
    )
