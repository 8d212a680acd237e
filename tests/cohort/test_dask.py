"""Cohorts on a local Dask cluster of two worker processes (loopback): same results as a serial
run, a worker killed mid-case, SIGTERM then --resume, a broken case."""

from __future__ import annotations

import json
import signal
import time

import pytest

from medfeat.cli.main import main


def _run(yaml, out, *extra):
    return main(["-q", "run", str(yaml), "--out", str(out), "--device", "cpu", *extra])


def _manifest(out):
    return json.loads((out / "cohort.json").read_text())


def test_two_workers_give_the_serial_results(cohort, tmp_path):
    yaml = cohort.make(tmp_path / "d", n=3, body=cohort.real)
    assert _run(yaml, tmp_path / "serial") == 0
    assert _run(yaml, tmp_path / "dask", "--workers", "2") == 0
    serial = json.loads((tmp_path / "serial" / "metrics.json").read_text())["cases"]
    dask = json.loads((tmp_path / "dask" / "metrics.json").read_text())["cases"]
    assert set(serial) == set(dask) == {"c0", "c1", "c2"}
    for case in serial:
        for key in ("sdlogj", "folding_pct"):
            assert dask[case][key] == pytest.approx(serial[case][key], rel=1e-4, abs=1e-6)
        after = serial[case]["tre_mm_after"]["mean"]
        assert dask[case]["tre_mm_after"]["mean"] == pytest.approx(after, rel=1e-4)
    record = json.loads((tmp_path / "dask" / "provenance.json").read_text())
    assert record["cohort"]["executor"].startswith("local Dask cluster, 2")
    workers = {e["worker"] for e in _manifest(tmp_path / "dask")["cases"].values()}
    assert all(w.split(":")[1] != str(__import__("os").getpid()) for w in workers)


def test_a_worker_killed_mid_case_still_finishes_every_case_once(toy_plugin, cohort, tmp_path):
    flag = tmp_path / "killed-once"
    yaml = cohort.make(tmp_path / "d", n=4, body=cohort.toy(kill_flag=str(flag)))
    out = tmp_path / "o"
    assert _run(yaml, out, "--workers", "2") == 0
    assert flag.is_file()  # one worker process did die in the middle of a case
    manifest = _manifest(out)
    assert manifest["counts"] == {"done": 4, "failed": 0, "pending": 0}
    cases = sorted(p.name for p in out.iterdir() if p.is_dir() and p.name != "report")
    assert cases == ["c0", "c1", "c2", "c3"]
    for case in ("c0", "c1", "c2", "c3"):
        record = json.loads((out / case / "provenance.json").read_text())
        assert record["case"] == case and (out / case / "warped_moving.nii.gz").is_file()
    assert cohort.leftovers(out) == []


def test_sigterm_writes_the_summary_then_resume_skips_finished_cases(medfeat_cli, cohort, tmp_path):
    yaml = cohort.make(tmp_path / "d", n=5, body=cohort.toy(sleep_s=1.0))
    out = tmp_path / "o"
    proc = medfeat_cli("-q", "run", str(yaml), "--out", str(out), "--workers", "2")
    deadline = time.time() + 120
    while time.time() < deadline:
        if (out / "cohort.json").is_file() and _manifest(out)["counts"]["done"] >= 1:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    err = " ".join(err.split())
    assert "SIGTERM" in err and "--resume" in err
    manifest = _manifest(out)
    done = [c for c, e in manifest["cases"].items() if e["status"] == "done"]
    assert manifest["state"] == "interrupted" and manifest["counts"]["pending"] >= 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert sorted(metrics["cases"]) == sorted(done) and metrics["pending"]
    assert cohort.leftovers(out) == []
    stamps = {c: (out / c / "provenance.json").stat().st_mtime_ns for c in done}
    # (in this process, with the same options: the resume check is the same)
    assert main(["-q", "run", str(yaml), "--out", str(out), "--resume"]) == 0
    manifest = _manifest(out)
    assert manifest["counts"] == {"done": 5, "failed": 0, "pending": 0}
    for case, stamp in stamps.items():
        assert "resumed" in manifest["cases"][case]["reason"]
        assert (out / case / "provenance.json").stat().st_mtime_ns == stamp


def test_a_broken_case_on_workers_is_recorded_and_the_rest_finish(toy_plugin, cohort, tmp_path):
    yaml = cohort.make(tmp_path / "d", n=3)
    (tmp_path / "d" / "f2.nii.gz").write_bytes(b"\x1f\x8b truncated")
    out = tmp_path / "o"
    assert _run(yaml, out, "--workers", "2") == 2
    manifest = _manifest(out)
    assert manifest["counts"] == {"done": 2, "failed": 1, "pending": 0}
    assert "f2.nii.gz" in manifest["cases"]["c2"]["reason"]
    assert cohort.leftovers(out) == []


def test_slurm_cluster_file_becomes_the_job_script(tmp_path):
    from medfeat.cohort.cluster import jobqueue_cluster, load_jobqueue_config

    cfg = tmp_path / "slurm.yaml"
    cfg.write_text(
        "jobqueue: slurm\njobs: 2\nqueue: gpu\naccount: lab\ncores: 8\nmemory: 32GB\ngpus: 1\n"
        "walltime: '02:00:00'\njob_script_prologue: ['source venv/bin/activate']\n"
    )
    cluster = jobqueue_cluster(load_jobqueue_config(cfg))
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in ("-p gpu", "-A lab", "--gres=gpu:1", "-t 02:00:00", "--mem=", "source venv/bin/activate", "OMP_NUM_THREADS=8"):  # fmt: skip
        assert line in script
    cfg.write_text("jobqueue: slurm\nwalltime_h: 2\n")
    from medfeat.errors import ConfigError

    with pytest.raises(ConfigError, match="walltime_h"):
        load_jobqueue_config(cfg)
