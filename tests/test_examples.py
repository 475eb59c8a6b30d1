"""The scripts in examples/ run as documented, against the embedded default.

Each runs as a subprocess of this interpreter, as cron would run it; the repository is
the throwaway embedded default of tests/conftest.py's isolation ($REPO_HOME in the test's
temporary directory).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import repo

if TYPE_CHECKING:
    from types import ModuleType

EXAMPLES = Path(__file__).parents[1] / "examples"
DAY = "2026-11-25"


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def produce(hour: str) -> subprocess.CompletedProcess[str]:
    done = run("hourly_producer.py", "--tag", "sales", "--hour", f"{DAY}T{hour}")
    assert done.returncode == 0, done.stderr
    return done


def visits(path: str) -> Counter[str]:
    """The visits per region of the published file, read here without the example."""
    with repo.Repo() as r:
        current = r.current(path)
        text = current.local_path.read_text(encoding="utf-8")
    totals: Counter[str] = Counter()
    for row in csv.DictReader(io.StringIO(text)):
        totals[row["region"]] += int(row["visits"])
    return totals


def test_hourly_producer_publishes_the_hour_date_tagged() -> None:
    done = produce("18")

    with repo.Repo() as r:
        rf = r.current("reports/sales/2026-11-25T18.csv")
        assert done.stdout == f"published {rf.path} (id {rf.file_id}, {rf.size} bytes)\n"
        assert rf.state == "published"
        assert {
            "sales",
            "hour=2026-11-25T18",
            "day=2026-11-25",
            "week=2026-W48",
            "month=2026-11",
        } <= set(rf.tags)
        assert rf.local_path.read_text().splitlines()[0] == "hour,region,visits"


def test_daily_consumer_waits_for_the_days_files_then_sums_them() -> None:
    produce("00")
    produce("01")
    consumer = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "daily_consumer.py"),
            "--day",
            DAY,
            "--expect",
            "3",
            "--wait",
            "30",
            "--poll",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert consumer.stderr is not None
        # It has looked once, found two of the three, and waits.
        assert consumer.stderr.readline() == (
            f"sales {DAY}: 2 of 3 files published; waiting up to 30 s\n"
        )
        produce("02")
        out, err = consumer.communicate(timeout=30)
    finally:
        consumer.kill()
    assert consumer.returncode == 0, err

    expected = sum((visits(f"reports/sales/{DAY}T{h}.csv") for h in ("00", "01", "02")), Counter())
    assert out == "".join(f"{region}\t{n}\n" for region, n in sorted(expected.items()))


def test_daily_consumer_exits_1_when_the_day_is_incomplete() -> None:
    produce("05")

    done = run("daily_consumer.py", "--day", DAY, "--expect", "24")

    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"sales {DAY}: 1 of 24 files published\n"


def test_nightly_maintenance_backs_up_collects_verifies_and_prunes() -> None:
    produce("07")
    produce("07")  # a second version: the first expires, and waits for backups

    done = run("nightly_maintenance.py", "--orphans")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(" ")[0] for line in lines] == ["backup", "gc:", "verify:", "cache:"]
    assert lines[1] == "gc: purged 0 unpublished, 0 expired, 0 orphans; 0 waiting for backups"
    assert lines[2] == "verify: 1 published, 1 expired checked, ok"
    with repo.Repo() as r:
        assert len(r.list_backups()) == 1


def test_nightly_maintenance_applies_retention_first() -> None:
    for hour in ("07", "08", "09"):
        produce(hour)  # three paths of one day: the daily bucket keeps the newest only

    done = run("nightly_maintenance.py", "--retain", "sales", "--keep", "2")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "retention: 1 kept, 2 expired (tag sales, 2 days, weeks and months)"
    assert [line.split(" ")[0] for line in lines[1:]] == ["backup", "gc:", "verify:", "cache:"]
    with repo.Repo() as r:
        assert [f.path for f in r.find(all=["sales"])] == [f"reports/sales/{DAY}T09.csv"]


def test_nightly_maintenance_exits_1_naming_a_lost_file() -> None:
    produce("09")
    with repo.Repo() as r:
        rf = r.current(f"reports/sales/{DAY}T09.csv")
    store = Path(os.environ["REPO_HOME"]) / "store"
    [lost] = [p for p in store.rglob("*") if p.as_posix().endswith(rf.key)]
    lost.chmod(0o600)
    lost.unlink()

    done = run("nightly_maintenance.py")

    assert done.returncode == 1
    assert f"verify: {rf.path} (id {rf.file_id}): " in done.stdout
    assert "verify: 1 published, 0 expired checked, PROBLEMS FOUND" in done.stdout


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_airflow_sensor_pokes_until_the_files_are_published() -> None:
    sensor = _load("airflow_sensor")
    assert sensor.files_ready(["sales", "day=2026-11-24"]) == []  # an empty repository
    with repo.Repo() as r:  # the embedded default, as the example's own run uses
        f = r.add_file("sales/2026-11-24.csv").touch("x").tag("sales", "day=2026-11-24")
        r.commit()
        assert sensor.files_ready(["sales", "day=2026-11-24"]) == []  # not published yet
        f.publish()
    assert sensor.files_ready(["sales", "day=2026-11-24"]) == ["sales/2026-11-24.csv"]
    assert sensor.files_ready(["sales", "day=2026-11-25"], wait_seconds=0.2) == []
    assert sensor.main(["sales"]) == 0
    assert sensor.main(["sales", "nothing"]) == sensor.NOT_YET
    # Run as a script, in a process of its own (the environment's REPO_HOME).
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "airflow_sensor.py"), "sales"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (run.returncode, run.stdout) == (0, "sales/2026-11-24.csv\n"), run.stderr
