"""Scale-out, for real: the ingest flow on a Dask LocalCluster of two worker processes, the store
on an S3 server on loopback (moto in server mode), the ledger on the suite's PostgreSQL.

Overlapping files, a file submitted twice at once under two names, and large files cut into
byte ranges all run as parallel tasks: every record is stored exactly once. Then a worker is
killed (SIGKILL) in the middle of a task: Dask runs the task again on another worker, and
nothing is duplicated or lost. Curation fans out per agent, and evaluation per batch of cases,
with the same results as one task. Workers rebuild settings, store and database from the
environment they were started with, as on a cluster.
"""

from __future__ import annotations

import contextvars
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.flows.conftest import prefect_harness  # noqa: F401 - the session's Prefect server

distributed = pytest.importorskip("distributed")
moto_server = pytest.importorskip("moto.server")
pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CHUNK = 1 << 16  # the smallest runtime.ingest_chunk_bytes: a 200 kB file is 3-4 ranges


def _interaction(
    i: int, agent: str = "shop-assistant", response: str = "It ships tomorrow."
) -> str:
    return json.dumps(
        {
            "interaction_id": f"int-{i:05d}",
            "agent_id": agent,
            "timestamp": f"2026-11-{1 + i % 2:02d}T10:00:00Z",  # few partitions, few parts
            "messages": [{"role": "user", "content": f"Where is order {i}? " + "x" * 200}],
            "response": response,
            "user_id": f"cust-{i % 37}",
        }
    )


def _write(path: Path, ids: range, agents: tuple[str, ...] = ("shop-assistant",)) -> Path:
    path.write_text("".join(_interaction(i, agents[i % len(agents)]) + "\n" for i in ids))
    return path


@pytest.fixture(scope="module")
def scale_env(
    tmp_path_factory: pytest.TempPathFactory, create_pg_database: Any
) -> Iterator[dict[str, Any]]:
    """RATCHET_*/AWS_* for S3 + PostgreSQL, set before the cluster starts (workers inherit
    them), and a LocalCluster of two single-threaded worker processes."""
    import boto3

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    home = tmp_path_factory.mktemp("scale") / "home"
    env = {
        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
        "RATCHET_HOME": str(home), "RATCHET_STORE": "s3://ratchet-scale/prod",
        "RATCHET_S3_ENDPOINT_URL": endpoint, "RATCHET_DATABASE_URL": create_pg_database(),
        "RATCHET_PSEUDONYM_KEY": "k" * 32,
    }  # fmt: skip
    boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
        aws_secret_access_key="test",
    ).create_bucket(Bucket="ratchet-scale")  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("RATCHET_"):
                mp.delenv(key)
        for key, value in env.items():
            mp.setenv(key, value)
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = distributed.Client(cluster)
        try:
            yield {"client": client, "address": cluster.scheduler_address, "home": home,
                   "db": env["RATCHET_DATABASE_URL"]}  # fmt: skip
        finally:
            client.close()
            cluster.close()
            server.stop()
            from ratchet.db import dispose_all

            dispose_all()


def _flow(env: dict[str, Any], paths: list[Path], chunk: int | None = CHUNK) -> dict[str, Any]:
    """The ingest flow on the cluster; ``chunk=None``: the default chunk (a task per file)."""
    from flows.ingest import ingest_flow

    runtime: dict[str, Any] = {"task_runner": "dask", "dask_address": env["address"]}
    if chunk is not None:
        runtime["ingest_chunk_bytes"] = chunk
    overrides = {"runtime": runtime, "ingest": {"batch_size": 100}}
    return ingest_flow(paths=[str(p) for p in paths], config_overrides=overrides)


def _ledger(env: dict[str, Any]) -> dict[str, Any]:
    """Every committed key, and every record id read back from the committed parts on S3."""
    from ratchet.db import repo
    from ratchet.schemas import INTERACTIONS
    from tasks import runtime

    s = runtime.settings()
    sessions = runtime.sessions(s)  # migrates a fresh database first
    engine = create_engine(env["db"])
    try:
        with engine.connect() as c:
            keys = [
                (a, r)
                for a, r in c.execute(
                    text("SELECT agent_id, record_id FROM record_keys WHERE kind='interaction'")
                )
            ]
            files = dict(c.execute(text("SELECT id, status FROM source_files")).tuples().all())
    finally:
        engine.dispose()
    with sessions() as session:
        paths = [p.path for p in repo.list_parts(session, "interactions")]
    table = runtime.store(s).read_tables(paths, INTERACTIONS, ["agent_id", "interaction_id"])
    stored = list(zip(table.column("agent_id").to_pylist(),
                      table.column("interaction_id").to_pylist(), strict=True))  # fmt: skip
    return {"keys": keys, "stored": stored, "files": files}


@pytest.mark.usefixtures("prefect_harness")
def test_overlapping_files_and_ranges_in_parallel_store_each_record_once(
    scale_env: dict[str, Any], tmp_path: Path
) -> None:
    agents = ("shop-assistant", "billing-bot")
    a = _write(tmp_path / "a.jsonl", range(0, 400), agents)  # 2 ranges
    b = _write(tmp_path / "b.jsonl", range(200, 600), agents)  # overlaps half of a
    a_again = tmp_path / "a-copy.jsonl"  # the same file submitted twice at once
    shutil.copy(a, a_again)
    summary = _flow(scale_env, [a, b, a_again])
    ledger = _ledger(scale_env)
    expected = {(agents[i % 2], f"int-{i:05d}") for i in range(600)}
    assert sorted(ledger["stored"]) == sorted(expected)  # each record in exactly one part
    assert sorted(ledger["keys"]) == sorted(expected)
    assert summary["stored"] == {"interactions": 600}
    assert summary["quarantined"] == {}
    assert set(ledger["files"].values()) == {"completed"}


def _worker_mid_task(client: Any, db: str, deadline: float) -> int | None:
    """The pid of a worker that is running an ingest task after at least one batch of the run
    committed (so the kill lands in the middle of a range), or None at the deadline."""
    engine = create_engine(db)
    try:
        while time.monotonic() < deadline:
            busy = [w for w, stack in client.call_stack().items() if stack]
            with engine.connect() as c:
                parts = c.execute(text("SELECT count(*) FROM parts")).scalar_one()
            if busy and parts > 0:
                pids = client.run(os.getpid, workers=busy[:1])
                return int(next(iter(pids.values())))
            time.sleep(0.05)
    finally:
        engine.dispose()
    return None


@pytest.mark.usefixtures("prefect_harness")
def test_a_worker_killed_mid_task_is_retried_and_nothing_is_duplicated_or_lost(
    scale_env: dict[str, Any], tmp_path: Path
) -> None:
    big = _write(tmp_path / "big.jsonl", range(5000, 5800))  # 4 ranges of ~200 records
    before = len(_ledger(scale_env)["keys"])
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["summary"] = _flow(scale_env, [big])
        except BaseException as exc:
            out["error"] = exc

    # the thread sees the test's Prefect settings (the harness's server is a context var)
    flow_thread = threading.Thread(target=contextvars.copy_context().run, args=(run,))
    flow_thread.start()
    victim = _worker_mid_task(scale_env["client"], scale_env["db"], time.monotonic() + 600)
    assert victim is not None, "no ingest task was seen running"
    os.kill(victim, signal.SIGKILL)
    flow_thread.join(900)
    assert not flow_thread.is_alive()
    assert "error" not in out, out.get("error")
    ledger = _ledger(scale_env)
    new_keys = sorted(ledger["keys"])[before:]
    expected = {("shop-assistant", f"int-{i:05d}") for i in range(5000, 5800)}
    stored_big = [k for k in ledger["stored"] if "int-05000" <= k[1] < "int-05800"]
    assert sorted(stored_big) == sorted(expected)  # nothing lost, nothing twice
    assert len(ledger["keys"]) == before + len(expected) and len(new_keys) >= 0
    assert set(ledger["files"].values()) == {"completed"}
    # the dead worker's task ran again elsewhere: the summary counts every record once
    assert out["summary"]["stored"]["interactions"] + sum(
        out["summary"]["skipped_already_stored"].values()
    ) == len(expected)


@pytest.fixture(scope="module")
def curated_week(
    scale_env: dict[str, Any],
    prefect_harness: None,  # noqa: F811 - the session's Prefect server, imported above
) -> dict[str, Any]:
    """The sample's first week ingested (a task per file: byte ranges are the tests' above) and
    curated on the cluster, once for the tests below; the curate flow's summary."""
    from flows.curate import curate_flow
    from tests.conftest import SAMPLE_DIR

    week = ["interactions-week-01.jsonl", "feedback-week-01.jsonl"]
    _flow(scale_env, [SAMPLE_DIR / f for f in week], chunk=None)
    overrides = {"runtime": {"task_runner": "dask", "dask_address": scale_env["address"]}}
    return dict(curate_flow(config_overrides=overrides))


@pytest.mark.usefixtures("prefect_harness")
def test_curation_fans_out_per_agent_on_the_cluster(curated_week: dict[str, Any]) -> None:
    """Each agent curated as its own task on the workers: the same versions as one by one."""
    from flows.curate import curate_flow

    summary = curated_week
    agents = {r["agent"] for r in summary["reports"]}
    assert len(agents) >= 2  # the sample's agents, each its own task
    assert all(r["versions"] for r in summary["reports"])
    again = curate_flow()  # threads: one by one, same inputs, same versions (none new)
    assert {(v["kind"], v["version"]) for r in again["reports"] for v in r["versions"]} == {
        (v["kind"], v["version"]) for r in summary["reports"] for v in r["versions"]
    }
    assert not any(v["created"] for r in again["reports"] for v in r["versions"])


@pytest.mark.usefixtures("prefect_harness", "curated_week")
def test_evaluation_fans_out_per_batch_of_cases_and_matches_one_task(
    scale_env: dict[str, Any],
) -> None:
    """An evaluation cut into batches of cases, each a task on the workers, writes the same
    per-case results as one task does, then cleans its batch files away."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.evaluate import evaluate_flow
    from flows.ingest import ingest_flow
    from ratchet.backends.logs import register_logs_model
    from ratchet.db import repo
    from ratchet.evaluation.evaluate import read_results
    from tasks import runtime
    from tests.conftest import SAMPLE_DIR

    agent = "shop-assistant"  # its logs and eval cases: the first week's (curated_week)
    s = runtime.settings()
    store, sessions = runtime.store(s), runtime.sessions(s)
    with sessions() as session, session.begin():
        production = register_logs_model(session, store, agent).version_id
    ingest_flow(paths=[str(SAMPLE_DIR / "interactions-week-02.jsonl")])  # threads: quicker
    with sessions() as session, session.begin():
        candidate = register_logs_model(session, store, agent)
        twin = repo.create_model_version(  # the same model, so nothing of the first run replays
            session, agent_id=agent, backend="logs", model_ref=candidate.model_ref
        ).id
    assert candidate.version_id != production
    evaluation = {"embedding": "tfidf", "bootstrap_samples": 200}
    state = evaluate_flow(
        candidate=candidate.version_id,
        config_overrides={"evaluation": evaluation, "runtime": {
            "task_runner": "dask", "dask_address": scale_env["address"], "eval_batch_cases": 25,
        }},
        return_state=True,
    )  # fmt: skip
    fanned = state.result()
    one = evaluate_flow(candidate=twin, config_overrides={"evaluation": evaluation})
    n = fanned["cases"]
    assert n > 25 and fanned["baseline"]["model_version_id"] == production
    assert fanned["candidate"]["answered"] == n and fanned["baseline"]["answered"] == n

    def by_case(path: str) -> dict[str, tuple[Any, ...]]:
        rows = read_results(store, path)
        return {r["case_id"]: (r["answer"], r["scores"], r["passed"], r["source"]) for r in rows}

    assert by_case(fanned["candidate"]["results_path"]) == by_case(one["candidate"]["results_path"])

    def quality(report: dict[str, Any]) -> list[dict[str, Any]]:  # latency is the clock's
        return [r for r in report["comparison"] if r["metric"] != "latency_ms"]

    assert quality(fanned) == quality(one)  # same scores, same intervals
    assert one["baseline"]["replayed"] == n  # the baseline's fanned-out results were complete
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    batches = [
        r.name for r in runs if r.name.endswith(tuple(f"-from-{i}" for i in range(0, n, 25)))
    ]
    assert len(batches) == 2 * -(-n // 25)  # both models, every batch its own task
    for side in ("candidate", "baseline"):
        assert store.list_files(f"evals/{fanned[side]['eval_run_id']}/batches") == []
