"""Timestep x level-subset sweep (MedDIFT paper Fig. 2): TRE per cell, as CSV and a heatmap PNG."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medfeat.api import FeatureMap

ALL_SUBSETS: tuple[tuple[int, ...], ...] = tuple(
    s for r in range(1, 5) for s in itertools.combinations(range(4), r)
)
RANDOM_NOTE = "RANDOM WEIGHTS - speed/plumbing check, NOT a result"


@dataclass
class Cell:
    """Errors of one (timestep, level subset) cell: per-keypoint TRE (mm) per case."""

    per_case: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def case_mean_mm(self) -> float:
        return float(np.mean([np.nanmean(e) for e in self.per_case.values()]))

    @property
    def keypoint_mean_mm(self) -> float:
        return float(np.nanmean(np.concatenate(list(self.per_case.values()))))

    @property
    def num_keypoints(self) -> int:
        return int(sum(e.size for e in self.per_case.values()))


def subset_label(levels: Sequence[int]) -> str:
    return "+".join(map(str, levels))


def sweep(
    cases: Iterable,
    backbone,
    matcher,
    timesteps: Sequence[int],
    subsets: Sequence[Sequence[int]],
    progress=None,
) -> dict[tuple[int, tuple[int, ...]], Cell]:
    """Extract all four levels once per (case, timestep) and match every level subset.

    ``backbone`` is a :class:`~medfeat_maisi_dift.backbone.MaisiDiftBackbone` (one set of networks
    for all timesteps); only one case's features are held at a time.
    """
    cells: dict[tuple[int, tuple[int, ...]], Cell] = {
        (t, tuple(s)): Cell() for t in timesteps for s in subsets
    }
    base = backbone.config.model_copy(update={"levels": [0, 1, 2, 3]})
    for case in cases:
        truth = case.moving_points.points
        for t in timesteps:
            backbone.config = base.model_copy(update={"timestep": t})
            fa, fb = backbone.extract(case.fixed), backbone.extract(case.moving)
            for s in subsets:
                pick = [fa.levels[i] for i in s], [fb.levels[i] for i in s]
                matches = matcher.match(
                    FeatureMap(pick[0], fa.source),
                    FeatureMap(pick[1], fb.source),
                    case.fixed_points,
                )
                err = np.linalg.norm(matches.positions_mm() - truth, axis=1)  # NaN: unmatched
                cells[(t, tuple(s))].per_case[case.id] = err
                if progress is not None:
                    progress(f"{case.id} t={t} levels={subset_label(s)}: {np.nanmean(err):.2f} mm")
            del fa, fb
    return cells


def write_table(cells: dict, path: Path, random_weights: bool) -> None:
    """One CSV row per cell: timestep, levels, case-mean and keypoint-mean TRE (mm)."""
    from medfeat.api import atomic_write_text

    lines = [
        "timestep,levels,case_mean_tre_mm,keypoint_mean_tre_mm,num_cases,num_keypoints,weights"
    ]
    for (t, s), cell in sorted(cells.items()):
        lines.append(
            f"{t},{subset_label(s)},{cell.case_mean_mm:.4f},{cell.keypoint_mean_mm:.4f},"
            f"{len(cell.per_case)},{cell.num_keypoints},{'random' if random_weights else 'checkpoint'}"
        )
    atomic_write_text(path, "\n".join(lines) + "\n")


def plot_heatmap(cells: dict, path: Path, random_weights: bool) -> None:
    """Heatmap of case-mean TRE: rows = level subsets, columns = timesteps (paper Fig. 2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timesteps = sorted({t for t, _ in cells})
    subsets = sorted({s for _, s in cells}, key=lambda s: (len(s), s))
    values = np.array([[cells[(t, s)].case_mean_mm for t in timesteps] for s in subsets])
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(timesteps), 1.2 + 0.4 * len(subsets)))
    im = ax.imshow(values, cmap="viridis_r", aspect="auto")
    ax.set_xticks(range(len(timesteps)), [str(t) for t in timesteps])
    ax.set_yticks(range(len(subsets)), [subset_label(s) for s in subsets])
    ax.set_xlabel("timestep t")
    ax.set_ylabel("up-block levels")
    for i, j in np.ndindex(values.shape):
        ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w")
    fig.colorbar(im, ax=ax, label="case-mean TRE (mm)")
    ax.set_title(
        RANDOM_NOTE if random_weights else "MedDIFT ablation: case-mean TRE (mm)", fontsize=8
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
