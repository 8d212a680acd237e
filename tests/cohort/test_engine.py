"""The cohort engine in-process: fault isolation, resume, overwrite, provenance, output checks."""

from __future__ import annotations

import json
import os

import pytest

from medfeat.cli.main import main


def _run(yaml, out, *extra):
    return main(["-q", "run", str(yaml), "--out", str(out), "--device", "cpu", *extra])


def test_a_broken_case_is_recorded_and_the_others_finish(toy_plugin, cohort, tmp_path, capsys):
    yaml = cohort.make(tmp_path / "d")
    (tmp_path / "d" / "m1.nii.gz").write_bytes(b"not an image at all")
    out = tmp_path / "o"
    assert _run(yaml, out) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "1 of 3 case(s) failed" in err and "c1" in err
    manifest = json.loads((out / "cohort.json").read_text())
    assert manifest["state"] == "failed" and manifest["counts"] == {
        "done": 2,
        "failed": 1,
        "pending": 0,
    }
    assert manifest["cases"]["c1"]["status"] == "failed"
    assert "m1.nii.gz" in manifest["cases"]["c1"]["reason"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["cases"]) == {"c0", "c2"} and set(metrics["failed"]) == {"c1"}
    assert not (out / "c1").exists() and (out / "c2" / "metrics.json").is_file()
    assert cohort.leftovers(out) == []
    # fix the case: --resume runs it alone
    cohort.make(tmp_path / "d")
    before = (out / "c0" / "provenance.json").stat().st_mtime_ns
    assert _run(yaml, out, "--resume") == 0
    manifest = json.loads((out / "cohort.json").read_text())
    assert manifest["counts"] == {"done": 3, "failed": 0, "pending": 0}
    assert "resumed" in manifest["cases"]["c0"]["reason"]
    assert manifest["cases"]["c1"]["reason"] == "finished"
    assert (out / "c0" / "provenance.json").stat().st_mtime_ns == before


def test_resume_reruns_a_case_whose_config_or_input_changed(toy_plugin, cohort, tmp_path):
    yaml = cohort.make(tmp_path / "d", n=2)
    out = tmp_path / "o"
    assert _run(yaml, out) == 0
    assert _run(yaml, out) == 2  # an earlier run is there: refused without --resume/overwrite
    stamp = {c: (out / c / "provenance.json").stat().st_mtime_ns for c in ("c0", "c1")}
    # a changed input reruns its case only
    from medfeat.io.images import read_image, write_image

    image = read_image(tmp_path / "d" / "m1.nii.gz")
    write_image(image.__class__(image.numpy() * 0.5, image.grid), tmp_path / "d" / "m1.nii.gz")
    assert _run(yaml, out, "--resume") == 0
    assert (out / "c0" / "provenance.json").stat().st_mtime_ns == stamp["c0"]
    assert (out / "c1" / "provenance.json").stat().st_mtime_ns != stamp["c1"]
    # a changed option reruns every case; an output option does not
    assert _run(yaml, out, "--resume", "output.report=false") == 0
    assert (out / "c0" / "provenance.json").stat().st_mtime_ns == stamp["c0"]
    assert _run(yaml, out, "--resume", "optimiser.sleep_s=0.01") == 0
    assert (out / "c0" / "provenance.json").stat().st_mtime_ns != stamp["c0"]
    # a damaged output reruns its case
    (out / "c0" / "warped_moving.nii.gz").write_bytes(b"x")
    assert _run(yaml, out, "--resume", "optimiser.sleep_s=0.01") == 0
    manifest = json.loads((out / "cohort.json").read_text())
    assert manifest["cases"]["c0"]["reason"] == "finished"
    assert "resumed" in manifest["cases"]["c1"]["reason"]


def test_case_and_cohort_provenance(toy_plugin, cohort, tmp_path, monkeypatch):
    from medfeat.io.checksum import sha256_file

    yaml = cohort.make(tmp_path / "d", n=1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["medfeat", "run", str(yaml), "--out", "rel-out"])
    assert _run(yaml, "rel-out") == 0
    out = (tmp_path / "rel-out").resolve()
    run = json.loads((out / "provenance.json").read_text())
    assert run["out_dir"] == str(out) and run["config"]["output"]["dir"] == str(out)
    assert run["code"]["medfeat"]["version"] and "rel-out" in run["command"]
    assert run["host"]["cpu_count"] >= 1 and run["host"]["hostname"]
    case = json.loads((out / "c0" / "provenance.json").read_text())
    assert case["out_dir"] == str(out) and case["case_dir"] == str(out / "c0")
    assert case["fingerprint"] == run["cohort"]["fingerprint"]
    assert set(case["outputs"]) >= {"metrics.json", "warped_moving.nii.gz"}
    for rel, info in case["outputs"].items():
        assert sha256_file(out / "c0" / rel) == info["sha256"]
    assert str((tmp_path / "d" / "f0.nii.gz").resolve()) in case["input_checksums"]
    assert run["case_outputs"]["c0"] == case["outputs"]
    checkout = run["code"]["medfeat"].get("checkout")
    if checkout is not None:  # an editable install from a git checkout
        assert set(checkout) == {"path", "commit", "dirty"}


def test_overwrite_leaves_no_old_case_folder(toy_plugin, cohort, tmp_path):
    yaml = cohort.make(tmp_path / "d", n=3)
    out = tmp_path / "o"
    assert _run(yaml, out) == 0
    (out / "notes.txt").write_text("mine")
    pairs = tmp_path / "d" / "pairs.csv"
    pairs.write_text("\n".join(pairs.read_text().splitlines()[:2]) + "\n")  # only c0 now
    assert _run(yaml, out, "output.overwrite=true") == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "c0", "cohort.json", "medfeat.log", "metrics.json", "notes.txt", "provenance.json",
        "report",
    ]  # fmt: skip


def test_outputs_colliding_with_inputs_are_refused_before_anything_is_written(
    toy_plugin, cohort, tmp_path, capsys
):
    yaml = cohort.make(tmp_path / "d", n=2)
    out = tmp_path / "o"
    # an input where a later case's metrics.json (a JSON output) goes
    (out / "c1").mkdir(parents=True)
    victim = out / "c1" / "metrics.json"
    victim.write_text("precious")
    pairs = tmp_path / "d" / "pairs.csv"
    pairs.write_text(pairs.read_text().replace("m1.csv", str(victim)))
    assert _run(yaml, out) == 2
    assert "input of this run" in capsys.readouterr().err
    assert victim.read_text() == "precious" and sorted(os.listdir(out)) == ["c1"]
    # an input named like a summary file at the top of the output folder
    top = tmp_path / "o2" / "provenance.json"
    top.parent.mkdir()
    top.write_text("precious")
    pairs.write_text(pairs.read_text().replace(str(victim), str(top)))
    assert _run(yaml, tmp_path / "o2") == 2
    assert top.read_text() == "precious" and os.listdir(tmp_path / "o2") == ["provenance.json"]


def test_unusable_output_folders_get_a_clear_message(
    toy_plugin, cohort, tmp_path, capsys, monkeypatch
):
    yaml = cohort.make(tmp_path / "d", n=1)
    (tmp_path / "afile").write_text("x")
    assert _run(yaml, tmp_path / "afile" / "out") == 2
    assert "is a file" in capsys.readouterr().err
    import medfeat.cohort.outputs as outputs

    ro = tmp_path / "readonly"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(outputs.os, "access", lambda p, m: False if str(p) == str(ro) else real_access(p, m))  # fmt: skip
    assert _run(yaml, ro / "out") == 2
    assert "is not writable" in capsys.readouterr().err
    assert not (ro / "out").exists()


def test_a_run_that_fails_before_any_case_leaves_no_folder(toy_plugin, cohort, tmp_path, capsys):
    yaml = cohort.make(tmp_path / "d", n=1, body=cohort.toy(refuse="true"))
    out = tmp_path / "new" / "out"
    assert _run(yaml, out) == 2
    assert "refuses to be built" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_stale_temporaries_and_locks_of_a_killed_run_are_cleaned(toy_plugin, cohort, tmp_path):
    yaml = cohort.make(tmp_path / "d", n=1)
    out = tmp_path / "o"
    assert _run(yaml, out) == 0
    (out / "c0" / ".warped_moving.nii.gz.ab12cd34.tmp.nii.gz").write_bytes(b"half")
    (out / ".staging" / "c0.0123abcd").mkdir(parents=True)
    (out / ".medfeat.lock").write_text(json.dumps({"host": os.uname().nodename, "pid": 2**22 + 7}))
    assert _run(yaml, out, "--resume") == 0
    assert cohort.leftovers(out) == []


def test_a_live_lock_refuses_a_second_run(toy_plugin, cohort, tmp_path, capsys):
    yaml = cohort.make(tmp_path / "d", n=1)
    out = tmp_path / "o"
    out.mkdir()
    (out / ".medfeat.lock").write_text(
        json.dumps({"host": os.uname().nodename, "pid": os.getppid()})
    )
    assert _run(yaml, out) == 2
    assert "Another medfeat run" in capsys.readouterr().err


@pytest.mark.parametrize("case_id", ["../escape", "a b", ".hidden"])
def test_case_ids_that_cannot_name_a_folder_are_refused(toy_plugin, cohort, tmp_path, case_id):
    yaml = cohort.make(tmp_path / "d", n=1)
    pairs = tmp_path / "d" / "pairs.csv"
    pairs.write_text(pairs.read_text().replace("\nc0,", f"\n{case_id},"))
    assert _run(yaml, tmp_path / "o") == 2
    assert not (tmp_path / "o").exists() and not (tmp_path / "escape").exists()
