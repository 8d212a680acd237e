"""The correspondence pipeline end to end: queries matched in the moving image's world space."""

import json

import numpy as np

from medfeat.cli.main import main


def test_correspondence_pipeline_mind_matcher(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(
        "kind: correspondence\n"
        "data: {name: breathing-phantom, shape: [40, 40, 40], spacing_mm: 4.0, amplitude_mm: 8.0, num_vessels: 20}\n"
        "backbone: {name: mind-ssc, radius_mm: 4.0}\n"
        "matcher: {name: feature-matcher, box_half_size_mm: 16.0}\n"
    )
    assert main(["-q", "run", str(p), "--out", str(tmp_path / "o")]) == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())["cases"][
        "breathing-phantom-seed0"
    ]
    assert m["num_queries"] == 20 and m["num_unmatched"] == 0 and "tre_mm_after" in m
    assert m["tre_mm_after"]["n"] == 20
    path = tmp_path / "o" / "breathing-phantom-seed0" / "matches_in_moving_world_lps_mm.csv"
    rows = [r for r in path.read_text().splitlines() if not r.startswith("#")]
    assert path.read_text().startswith("# medfeat points: world mm, space=LPS\n")
    assert rows[0] == "label,x,y,z,score,query" and len(rows) == 21
    # every match lies inside the query's box in B's world space, scores are cosines
    from medfeat.api import read_landmarks
    from medfeat.phantoms import breathing_phantom

    queries = breathing_phantom((40, 40, 40), 4.0, 8.0, 20).fixed_points.points
    table = np.array([[float(v) for v in r.split(",")] for r in rows[1:]])
    assert np.all(np.abs(table[:, 1:4] - queries) <= 16.0 + 1e-6)
    assert np.all(np.abs(table[:, 4]) <= 1.0 + 1e-6)
    np.testing.assert_array_equal(table[:, 5], np.arange(20))
    # medfeat's own reader reads the table back, without being told its space
    back = read_landmarks(path)
    np.testing.assert_allclose(back.points, table[:, 1:4])
    assert back.labels == [str(i + 1) for i in range(20)]
