import torch
import torch.nn.functional as F

from medfeat.engine.mind import gaussian_smooth, mind_ssc, ssc_offsets


def _naive_mind(img, radius, dilation):
    """Direct transcription of the published algorithm (12 shifted pairs, box filter)."""
    shape = img.shape[2:]
    p = F.pad(img, (dilation,) * 6, mode="replicate")

    def sh(o):
        k, j, i = (dilation + c * dilation for c in o)
        return p[:, :, k : k + shape[0], j : j + shape[1], i : i + shape[2]]

    ssd = torch.cat([(sh(a) - sh(b)) ** 2 for a, b in ssc_offsets()], 1)
    ssd = F.avg_pool3d(F.pad(ssd, (radius,) * 6, mode="replicate"), 2 * radius + 1, stride=1)
    m = ssd - ssd.min(1, keepdim=True)[0]
    v = m.mean(1, keepdim=True)
    mv = v.mean()
    return torch.exp(-m / v.clamp(mv * 0.001, mv * 1000))


def test_offsets_are_twelve_distinct_pairs_at_distance_sqrt2():
    pairs = ssc_offsets()
    assert len(pairs) == 12
    assert len({frozenset(p) for p in pairs}) == 12
    for a, b in pairs:
        assert sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) == 2


def test_shape_range_and_interior_matches_naive():
    img = torch.rand(2, 1, 20, 18, 16)
    out = mind_ssc(img, radius=1, dilation=2)
    assert out.shape == (2, 12, 20, 18, 16)
    assert out.min() > 0 and out.max() <= 1.0 + 1e-6
    ref = _naive_mind(img[:1], 1, 2)
    b = 4  # borders differ by the replicate-padding order only
    assert torch.allclose(out[:1, :, b:-b, b:-b, b:-b], ref[:, :, b:-b, b:-b, b:-b], atol=1e-4)


def test_invariant_to_intensity_scaling_and_offset():
    img = torch.rand(1, 1, 16, 16, 16)
    a = mind_ssc(img, 2, 2)
    b = mind_ssc(7.5 * img + 3.0, 2, 2)
    assert torch.allclose(a, b, atol=1e-4)


def test_gaussian_smooth_preserves_constant_and_mean():
    img = torch.full((1, 1, 8, 9, 10), 2.5)
    assert torch.allclose(gaussian_smooth(img, 1.0), img)
    noise = torch.rand(1, 1, 16, 16, 16)
    sm = gaussian_smooth(noise, 1.5)
    assert sm.std() < noise.std()
    assert abs(sm.mean() - noise.mean()) < 0.02


def _naive_mind_per_axis(img, radius, dilation):
    """The published algorithm with one radius and one dilation per axis (D, H, W)."""
    shape = img.shape[2:]
    pads = (dilation[2], dilation[2], dilation[1], dilation[1], dilation[0], dilation[0])
    p = F.pad(img, pads, mode="replicate")

    def sh(o):
        k, j, i = (d + c * d for c, d in zip(o, dilation, strict=True))
        return p[:, :, k : k + shape[0], j : j + shape[1], i : i + shape[2]]

    ssd = torch.cat([(sh(a) - sh(b)) ** 2 for a, b in ssc_offsets()], 1)
    rp = (radius[2], radius[2], radius[1], radius[1], radius[0], radius[0])
    ssd = F.avg_pool3d(F.pad(ssd, rp, mode="replicate"), [2 * r + 1 for r in radius], stride=1)
    m = ssd - ssd.min(1, keepdim=True)[0]
    v = m.mean(1, keepdim=True)
    mv = v.mean()
    return torch.exp(-m / v.clamp(mv * 0.001, mv * 1000))


def test_radius_and_dilation_per_axis_match_the_naive_descriptor():
    img = torch.rand(1, 1, 22, 20, 24)
    radius, dilation = (1, 2, 1), (2, 1, 3)
    out = mind_ssc(img, radius=radius, dilation=dilation)
    ref = _naive_mind_per_axis(img, radius, dilation)
    b = 6
    assert torch.allclose(out[:, :, b:-b, b:-b, b:-b], ref[:, :, b:-b, b:-b, b:-b], atol=1e-4)
    # one value for every axis is the same as that value repeated
    assert torch.equal(mind_ssc(img, 2, 2), mind_ssc(img, (2, 2, 2), (2, 2, 2)))
