"""`make bench` finds the datasets beside a clone, and says clearly when they are missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _workloads import DATASETS_ENV, FILES, check_datasets, default_datasets  # noqa: E402


def test_a_clone_next_to_shared_finds_its_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATASETS_ENV, raising=False)
    data = tmp_path / "shared" / "datasets"
    data.mkdir(parents=True)
    clone = tmp_path / "tomasulo"
    worktree = tmp_path / "wt" / "branch"
    assert default_datasets(clone) == data
    assert default_datasets(worktree) == data  # a worktree a level deeper finds it too
    monkeypatch.setenv(DATASETS_ENV, str(tmp_path / "elsewhere"))
    assert default_datasets(clone) == tmp_path / "elsewhere"


def test_missing_datasets_say_what_where_and_how_to_point_elsewhere(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as gone:
        check_datasets(tmp_path / "nope")
    message = str(gone.value)
    assert f"{tmp_path / 'nope'} does not exist" in message
    assert all(name in message for name in FILES.values())
    assert "make bench DATASETS=DIR" in message and "--datasets DIR" in message
    (tmp_path / FILES["hotpotqa"]).write_text("[]")
    with pytest.raises(SystemExit, match=r"lacks parallelqa_dataset\.json, movie_recommendations"):
        check_datasets(tmp_path)
    check_datasets(tmp_path, ["hotpotqa"])  # all it needs is there


def test_the_e2e_benchmark_stops_at_once_without_its_datasets(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "e2e_bench.py"), "--datasets", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 1
    assert "the benchmark datasets are missing" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_bench_runs_the_e2e_benchmark_last_with_the_datasets_given() -> None:
    done = subprocess.run(
        ["make", "-n", "bench", "DATASETS=/data/sets", "PY=python"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if "benchmarks/" in line]
    assert lines[-1] == "python benchmarks/e2e_bench.py --datasets /data/sets", done.stdout
