"""Agents hosted by real Ray actors: same results as local, batching, faults, backpressure."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from slm_agents import tracking
from slm_agents.patterns import Cascade
from slm_agents.result import Task
from slm_agents.runtime import AgentSpec, HostingConfig, RayAgent

ROUTER = AgentSpec(
    "router",
    "classifier",
    "all-minilm-l6-v2",
    labels={"cards": "lost or stolen bank card, PIN", "transfers": "sending money, bank transfer"},
)
WRITER = AgentSpec("writer", "llm", "smollm2-135m-instruct", max_new_tokens=32, device="cpu")


@pytest.fixture(scope="module")
def hosted_router(ray_cluster):
    agent = RayAgent(ROUTER, hosting=HostingConfig(num_cpus=0.5, max_batch_size=8, max_wait_ms=20))
    yield agent
    agent.shutdown()


def test_ray_agent_gives_the_same_results_as_local_and_batches(hosted_router):
    tasks = ["my card is lost", "send money to my mum", "", "card PIN blocked"] * 4
    remote = hosted_router.run_batch(tasks)
    local = hosted_router.local().run_batch(tasks)
    assert [r.output for r in remote] == [r.output for r in local]
    assert [r.error for r in remote] == [r.error for r in local]
    assert remote[2].error == "task text is empty"
    [info] = hosted_router.info()
    assert max(info["batches"]) > 1, info  # single calls were gathered into batches
    assert info["tokenizers_parallelism"] == "false"  # safe to fork a sandbox (runtime.worker)


def test_concurrent_callers_share_batches(hosted_router):
    before = len(hosted_router.info()[0]["batches"])
    results = {}

    def call(i):
        results[i] = hosted_router.run("my card is lost")

    threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.output == "cards" for r in results.values())
    new_batches = hosted_router.info()[0]["batches"][before:]
    assert sum(new_batches) == 12 and len(new_batches) < 12


def test_an_unbatched_agent_is_served_by_a_direct_synchronous_actor(ray_cluster, hosted_router):
    direct = RayAgent(ROUTER, hosting=HostingConfig(num_cpus=0.25, max_batch_size=1))
    try:
        results = direct.run_batch(["my card is lost", "I lost my card", "card stolen"])
        assert [r.output for r in results] == ["cards"] * 3
        info = direct.info()[0]
        assert info["kind"] == "DirectAgentActor" and info["batches"] == [1, 1, 1]
        assert hosted_router.info()[0]["kind"] == "AgentActor"  # batching on: the async actor
    finally:
        direct.shutdown()


def test_backpressure_refuses_or_waits(ray_cluster):
    small = HostingConfig(num_cpus=0.25, max_pending=2)
    refuse = RayAgent(ROUTER, hosting=replace(small, when_full="error", max_batch_size=1))
    wait = RayAgent(ROUTER, hosting=replace(small, when_full="wait", max_batch_size=4))
    try:
        refused = refuse.run_batch(["my card"] * 5)
        assert [r.ok for r in refused] == [True, True, False, False, False]
        assert "busy: 2 tasks already in flight" in refused[-1].error
        waited = wait.run_batch(["my card"] * 7)
        assert all(r.output == "cards" for r in waited)
        assert max(wait.info()[0]["batches"]) <= 2  # never more than max_pending in flight
    finally:
        refuse.shutdown()
        wait.shutdown()


def test_unplaceable_replicas_fail_fast_with_the_free_resources(ray_cluster):
    with pytest.raises(RuntimeError, match="not ready after 3 s; free resources now"):
        RayAgent(ROUTER, hosting=HostingConfig(num_cpus=64, startup_timeout_s=3))


def _kill_after(agent: RayAgent, seconds: float) -> threading.Thread:
    import ray

    def kill():
        time.sleep(seconds)
        ray.kill(agent.actors[0], no_restart=False)  # Ray may restart it

    thread = threading.Thread(target=kill)
    thread.start()
    return thread


@pytest.mark.slow
def test_an_actor_killed_mid_batch_is_restarted_and_its_requests_retried(ray_cluster):
    agent = RayAgent(WRITER, hosting=HostingConfig(num_cpus=1, max_batch_size=4, max_retries=2))
    try:
        pid_before = agent.info()[0]["pid"]
        tasks = [Task(f"Write a sentence about the number {i}.", id=f"t{i}") for i in range(4)]
        killer = _kill_after(agent, 1.0)
        results = agent.run_batch(tasks)
        killer.join()
        assert [r.task_id for r in results] == ["t0", "t1", "t2", "t3"]  # each exactly once
        assert all(r.ok and r.output for r in results), [r.error for r in results]
        assert agent.info()[0]["pid"] != pid_before  # it really died and came back
    finally:
        agent.shutdown()


@pytest.mark.slow
def test_without_retries_in_flight_requests_come_back_as_failed_results(ray_cluster):
    agent = RayAgent(WRITER, hosting=HostingConfig(num_cpus=1, max_batch_size=4, max_retries=0))
    try:
        killer = _kill_after(agent, 1.0)
        results = agent.run_batch([f"Write a sentence about the number {i}." for i in range(4)])
        killer.join()
        assert len(results) == 4
        assert all(not r.ok and "failed after retries" in r.error for r in results)
    finally:
        agent.shutdown()


def test_one_trace_per_request_across_actor_boundaries(ray_cluster, hosted_router, mlflow_store):
    import mlflow

    small = hosted_router
    large = RayAgent(
        AgentSpec("big", "classifier", "all-minilm-l6-v2", labels=["cards", "transfers"]),
        hosting=HostingConfig(num_cpus=0.5),
    )
    try:
        tasks = [Task("my card is lost"), Task("hmm")]
        with tracking.run("traced") as run_id:
            results = Cascade(small, large, threshold=0.99).run_batch(tasks)
            tracking.trace_results(results, tasks)
        traces = mlflow.search_traces(run_id=run_id, return_type="list")
        assert len(traces) == 2
        by_id = {t.info.trace_id: t for t in traces}
        for result in results:
            spans = by_id[result.trace_id].data.spans
            assert sorted(s.name for s in spans[1:]) == sorted(result.agents)  # a span per call
            assert spans[0].inputs == {
                "task": next(t.text for t in tasks if t.id == result.task_id)
            }
    finally:
        large.shutdown()


RAY_PRICED = """
name: priced-on-ray
agents:
  router: {kind: classifier, model: all-minilm-l6-v2, labels: [cards, transfers, account]}
flow: {agent: router}
input: {text_column: text, id_column: id}
hosting: {ray: true, num_cpus: 0.25, max_batch_size: 1}
prices:
  all-minilm-l6-v2: {input_per_million: 1000, output_per_million: 0}
"""


def test_team_spec_prices_reach_the_ray_hosted_agents_of_a_job(ray_cluster, tmp_path):
    import json
    from pathlib import Path

    from slm_agents.job import run_job

    tickets = Path(__file__).resolve().parents[2] / "examples" / "data" / "support_tickets.csv"
    (tmp_path / "team.yaml").write_text(RAY_PRICED)
    out = tmp_path / "results.jsonl"
    run_job(tmp_path / "team.yaml", tickets, out, limit=3, track=False, progress=False)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all(r["error"] is None and r["tokens"] > 0 for r in rows)
    for row in rows:  # priced in the actor, by the spec's table, not the default
        assert row["cost_usd"] == pytest.approx(row["tokens"] * 1000 / 1e6)
