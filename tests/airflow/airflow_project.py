"""The per-test project layout of the Airflow tests and the helpers the test modules share
(imported by conftest and the tests; never a test module from another)."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pendulum
from sqlalchemy import create_engine, text

from samples.generator import write_offers

PARIS = "Europe/Paris"

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Project:
    """Where one test's project data lives (all under tmp)."""

    root: Path
    db_url: str
    landing: Path
    sources: Path
    config: Path
    reports: Path

    def source_dir(self, name: str) -> Path:
        return self.sources / name

    def archive(
        self, source: str, day: datetime.date, data: bytes, name: str = "offres.xml"
    ) -> Path:
        """Archive `data` as `source`'s snapshot of `day`, as a past night's fetch would."""
        folder = self.landing / source / day.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        (folder / f"{name}.sha256").write_text(f"{digest}  {name}\n")
        return folder / name


def night(day: datetime.date) -> pendulum.DateTime:
    """The logical date of the nightly run of `day` (02:00 Paris)."""
    return pendulum.datetime(day.year, day.month, day.day, 2, 0, tz=PARIS)


def today_paris() -> datetime.date:
    return pendulum.now(PARIS).date()


def offers(
    path: Path, *, seed: int, formations: int = 4, day: datetime.date | None = None
) -> bytes:
    write_offers(
        path,
        formations=formations,
        seed=seed,
        lheo_version="2.3",
        reference_date=day or today_paris(),
    )
    return path.read_bytes()


def task_states(run: Any) -> dict[tuple[str, int], str]:
    return {(ti.task_id, ti.map_index): str(ti.state) for ti in run.get_task_instances()}


def query_rows(db_url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def unpause(dag_id: str) -> None:
    """Register the DAG folder in the metadata DB (as dag.test() does) and unpause `dag_id`,
    so that an asset event queues a run for it, as it would in production."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    for bundle in manager.get_all_dag_bundles():
        bundle.initialize()
        bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
        sync_bag_to_db(bag, bundle.name, bundle.version)
    with create_session() as session:
        session.query(DagModel).filter(DagModel.dag_id == dag_id).update({"is_paused": False})


def run_queued(dag: Any, run_id: str) -> Any:
    """Execute an existing queued run (a backfill's) in-process, like dag.test() does."""
    from airflow.models.dagrun import DagRun
    from airflow.sdk.definitions.dag import _run_task
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState

    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.run_id == run_id).one()
        run.dag = scheduler_dag
        run.state = DagRunState.RUNNING
        session.commit()
        while run.state == DagRunState.RUNNING:
            session.expire_all()
            # Running a task may detach the run from this session: take it again.
            run = session.query(DagRun).filter(DagRun.run_id == run_id).one()
            run.dag = scheduler_dag
            # The DAG callback is the DAG processor's job (not run here).
            schedulable, _ = run.update_state(session=session, execute_callbacks=False)
            for ti in schedulable:
                ti.try_number += 1
                ti.state = TaskInstanceState.SCHEDULED
            session.commit()
            for ti in run.get_task_instances(session=session):
                if ti.state == TaskInstanceState.SCHEDULED:
                    # A failing task records its state; the loop goes on like dag.test().
                    with contextlib.suppress(Exception):
                        _run_task(ti=ti, task=dag.task_dict[ti.task_id])
        return run
