"""Automatic masks (medfeat.masks) on the breathing phantom."""


def test_auto_lung_mask_on_phantom():
    from medfeat.masks import auto_mask
    from medfeat.phantoms import breathing_phantom

    pair = breathing_phantom((40, 40, 40), 4.0)
    mask = auto_mask(pair.fixed, "lung").numpy().astype(bool)
    lungs = pair.fixed_labels.numpy() == 2
    assert (mask & lungs).sum() > 0.95 * lungs.sum()  # covers the lungs (it is dilated by 2 voxels)
    assert (mask & (pair.fixed_labels.numpy() == 0)).sum() == 0  # never reaches outside the body
