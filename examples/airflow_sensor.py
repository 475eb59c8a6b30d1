"""Start work when a repository's files arrive: an Airflow sensor over `Repo.wait`.

The check itself is plain Python (`files_ready`) and needs nothing but `repo`; the
Airflow sensor below wraps it and is defined only where Airflow is installed. Any other
scheduler can call `files_ready` from its own sensor (Dagster's ``@sensor``, a cron job)
or run the command, whose exit status says it all (0 found, 3 not yet, 1 an error)::

    repo wait --all sales --all day=2026-11-24 --timeout 0

(Airflow's ``BashSensor`` treats any status but 0 as "not yet".)

In a DAG::

    from airflow_sensor import RepoFilesSensor

    sales_ready = RepoFilesSensor(
        task_id="sales_ready",
        all_tags=["sales", "day={{ ds }}"],
        mode="reschedule",  # free the worker slot between pokes
        poke_interval=300,
    )

The matching paths go to XCom for the next task. Run on its own, this file checks once:
``python examples/airflow_sensor.py sales day=2026-11-24`` (exit status 0 or 3).
"""

from __future__ import annotations

import sys
from typing import Any

import repo

#: `repo wait`'s exit status when nothing matched in time.
NOT_YET = 3


def files_ready(
    all_tags: list[str],
    *,
    config: Any = None,
    wait_seconds: float = 0,
) -> list[str]:
    """The paths of the current files carrying every tag in `all_tags`, or [] if there
    are none yet. ``wait_seconds`` > 0 waits that long for them first (PostgreSQL
    wakes as soon as they are published); 0 looks once, as a rescheduling sensor does.
    """
    with repo.Repo(config) as r:
        return [f.path for f in r.wait(all=all_tags, timeout=wait_seconds)]


try:
    from airflow.sensors.base import BaseSensorOperator, PokeReturnValue
except ImportError:  # no Airflow here: `files_ready` still works
    BaseSensorOperator = None

if BaseSensorOperator is not None:

    class RepoFilesSensor(BaseSensorOperator):
        """Done when a current file carries every tag in `all_tags` (templated)."""

        template_fields = ("all_tags",)

        def __init__(self, *, all_tags: list[str], repo_config: Any = None, **kwargs: Any):
            super().__init__(**kwargs)
            self.all_tags = all_tags
            self.repo_config = repo_config

        def poke(self, context: Any) -> Any:
            found = files_ready(list(self.all_tags), config=self.repo_config)
            return PokeReturnValue(is_done=bool(found), xcom_value=found)


def main(argv: list[str]) -> int:
    found = files_ready(argv)
    for path in found:
        print(path)
    return 0 if found else NOT_YET


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
