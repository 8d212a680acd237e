import numpy as np
import torch
import torch.nn.functional as F

from medfeat.engine.matcher import candidate_level_of, match_points


def _levels(volume: torch.Tensor, origin_vox: tuple[int, int, int], spacing: float = 1.5):
    """Two levels of a crop: level 0 native, level 1 average-pooled by 2, with affines
    ``index -> world`` for a crop starting at ``origin_vox`` of a common parent volume."""
    lvl0 = volume
    lvl1 = F.avg_pool3d(volume[None], 2)[0]
    a0 = np.eye(4)
    a0[:3, :3] *= spacing
    a0[:3, 3] = np.array(origin_vox) * spacing
    a1 = a0.copy()
    a1[:3, :3] *= 2
    a1[:3, 3] += 0.5 * spacing  # centre of the 2x2x2 block
    return [lvl0, lvl1], [a0, a1]


def _pair(shift=(2, -4, 6), size=(16, 18, 20), channels=(5, 3)):
    g = torch.Generator().manual_seed(0)
    parent = torch.randn(channels[0], 40, 40, 40, generator=g)
    oa = (10, 12, 8)
    ob = tuple(o + s for o, s in zip(oa, shift, strict=True))
    crop = lambda o: parent[:, o[0] : o[0] + size[0], o[1] : o[1] + size[1], o[2] : o[2] + size[2]]  # noqa: E731
    fa, aa = _levels(crop(oa), oa)
    fb, ab = _levels(crop(ob), ob)
    return fa, aa, fb, ab


def _brute_force(fa, aa, fb, ab, pts):
    """Reference: all candidate descriptors at once, plain argmax."""
    from medfeat.engine.warp import trilinear_points

    def desc(feats, affs, world):
        out = []
        for f, a in zip(feats, affs, strict=True):
            inv = np.linalg.inv(a)
            idx = world @ inv[:3, :3].T + inv[:3, 3]
            vol = f.permute(1, 2, 3, 0).contiguous()
            out.append(
                F.normalize(trilinear_points(vol, torch.as_tensor(idx, dtype=torch.float32)), dim=1)
            )
        return out

    shape = fb[0].shape[1:]
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    world = idx @ ab[0][:3, :3].T + ab[0][:3, 3]
    q = desc(fa, aa, pts)
    c = desc(fb, ab, world)
    sim = sum(qq @ cc.T for qq, cc in zip(q, c, strict=True)) / len(q)
    val, arg = sim.max(1)
    return world[arg.numpy()], val


def test_global_matching_recovers_integer_shift_exactly():
    shift = (2, -4, 6)
    fa, aa, fb, ab = _pair(shift)
    # interior query voxels of A whose match lies inside B (B starts `shift` voxels later)
    idx = np.array([[4, 8, 8], [6, 10, 12], [8, 12, 9], [10, 9, 10], [7, 11, 11]])
    pts = idx @ aa[0][:3, :3].T + aa[0][:3, 3]
    res = match_points(fa, aa, fb, ab, pts, chunk=500)
    # same world position: the parent voxel is the same, so the world point is unchanged
    np.testing.assert_allclose(res.positions_mm.numpy(), pts, atol=1e-9)
    assert torch.allclose(res.scores, torch.ones(len(pts), dtype=res.scores.dtype), atol=1e-5)
    # in B's voxel indices the match sits `shift` voxels before the query's A index
    b_index = np.unravel_index(res.candidate_index.numpy(), fb[0].shape[1:])
    np.testing.assert_array_equal(np.stack(b_index, 1), idx - np.array(shift))


def test_chunked_equals_brute_force():
    fa, aa, fb, ab = _pair((1, 0, -2))
    g = np.random.default_rng(3)
    pts = g.uniform([18, 21, 15], [36, 42, 38], size=(40, 3))  # continuous world points
    ref_pos, ref_val = _brute_force(fa, aa, fb, ab, pts)
    for chunk in (397, 10**6):
        res = match_points(fa, aa, fb, ab, pts, chunk=chunk)
        np.testing.assert_allclose(res.positions_mm.numpy(), ref_pos, atol=1e-9)
        assert torch.allclose(res.scores, ref_val.to(res.scores.dtype), atol=1e-5)


def test_box_restriction_limits_the_search():
    fa, aa, fb, ab = _pair((2, -4, 6))
    pts = np.array([[6, 10, 12]]) @ aa[0][:3, :3].T + aa[0][:3, 3]
    # the true match is at the same world point; a box away from it must not find it
    centre = pts + np.array([[9.0, 0.0, 0.0]])
    res = match_points(fa, aa, fb, ab, pts, box_half_size_mm=4.0, centres_b_mm=centre, chunk=64)
    pos = res.positions_mm.numpy()
    assert np.all(np.abs(pos - centre) <= 4.0 + 1e-9)
    assert res.scores[0] < 0.999
    # a box containing it does
    res = match_points(fa, aa, fb, ab, pts, box_half_size_mm=(3.0, 3.0, 3.0), chunk=64)
    np.testing.assert_allclose(res.positions_mm.numpy(), pts, atol=1e-9)
    # an empty box gives no match
    far = pts + 1000.0
    res = match_points(fa, aa, fb, ab, pts, box_half_size_mm=1.0, centres_b_mm=far)
    assert res.candidate_index[0] == -1 and np.isnan(res.positions_mm.numpy()).all()
    assert torch.isnan(res.scores).all() and res.num_unmatched == 1


def test_queries_outside_a_or_with_a_box_missing_b_are_unmatched_not_errors():
    fa, aa, fb, ab = _pair((2, -4, 6))
    inside = np.array([[6, 10, 12], [8, 12, 9]]) @ aa[0][:3, :3].T + aa[0][:3, 3]
    # A's levels span world x 15..37.5 (voxel edges 14.25..38.25): one query just beyond that
    # edge box (border copies of A's features would match something), one far away
    outside_a = np.array([[39.5, 25.0, 20.0], [-40.0, 0.0, 0.0]])
    # inside A, but its box (x +-1 mm) ends before B's first voxel row (B starts at x = 18 mm)
    box_misses_b = np.array([[15.5, 20.0, 25.0]])
    pts = np.vstack([inside, outside_a, box_misses_b])
    res = match_points(fa, aa, fb, ab, pts, box_half_size_mm=(1.0, 3.0, 3.0), chunk=97)
    np.testing.assert_array_equal(res.matched.numpy(), [True, True, False, False, False])
    assert res.num_unmatched == 3
    pos, scores = res.positions_mm.numpy(), res.scores.numpy()
    assert np.isnan(pos[2:]).all() and np.isnan(scores[2:]).all()
    assert (res.candidate_index[2:] == -1).all()
    # the matched queries are unaffected by the others
    alone = match_points(fa, aa, fb, ab, inside, box_half_size_mm=(1.0, 3.0, 3.0), chunk=97)
    np.testing.assert_allclose(pos[:2], alone.positions_mm.numpy())
    np.testing.assert_allclose(scores[:2], alone.scores.numpy())
    # without a box, a query outside A is still unmatched; one inside A always finds a match
    res = match_points(fa, aa, fb, ab, pts)
    np.testing.assert_array_equal(res.matched.numpy(), [True, True, False, False, True])


def test_extent_of_image_a_decides_what_lies_outside_a():
    fa, aa, fb, ab = _pair((0, 0, 0))
    # image A: 8 voxels of 1.5 mm along x from x = 15 (edges 14.25..26.25), smaller than levels
    extent = (aa[0], (8, 18, 20))
    pts = np.array([[20.0, 25.0, 20.0], [30.0, 25.0, 20.0]])
    res = match_points(fa, aa, fb, ab, pts, extent_a=extent)
    np.testing.assert_array_equal(res.matched.numpy(), [True, False])
    # an image larger than the levels keeps a query beyond them (border features) matched
    res = match_points(fa, aa, fb, ab, pts + [[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]],
                       extent_a=(aa[0], (40, 18, 20)))  # fmt: skip
    np.testing.assert_array_equal(res.matched.numpy(), [True, True])


def test_inside_levels_uses_the_voxel_edge_box_of_any_level():
    from medfeat.engine.matcher import inside_levels

    fa, aa, _, _ = _pair()
    inv = [torch.linalg.inv(torch.as_tensor(a)) for a in aa]
    shapes = [f.shape[1:] for f in fa]
    # level 0: 16 voxels of 1.5 mm from x = 15: edges 14.25 .. 38.25
    pts = torch.tensor([[14.3, 20.0, 20.0], [14.2, 20.0, 20.0], [38.2, 20.0, 20.0]]).double()
    np.testing.assert_array_equal(inside_levels(shapes[:1], inv[:1], pts).numpy(), [1, 0, 1])


def test_candidate_level_is_finest():
    _, aa, _, _ = _pair()
    assert candidate_level_of(aa) == 0
    assert candidate_level_of(aa[::-1]) == 1
