"""The examples in examples/ run: their plain-Python parts against the embedded default."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import repo

if TYPE_CHECKING:
    from types import ModuleType

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


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
