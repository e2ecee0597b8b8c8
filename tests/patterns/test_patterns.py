"""The four patterns, each an Agent: routing, pipeline, parallel verification, cascade."""

from __future__ import annotations

import time

import pytest

from slm_agents.agent import ClassifierAgent, FunctionAgent, LLMAgent
from slm_agents.patterns import Cascade, ParallelVerify, Pipeline, Route, Stage, calibrate_threshold
from slm_agents.result import Task


def const(name: str, output, confidence: float = 1.0, sleep: float = 0.0) -> FunctionAgent:
    def fn(task: Task):
        time.sleep(sleep)
        return output, confidence

    return FunctionAgent(name, fn)


def by_meta(name: str) -> FunctionAgent:
    """Answers task.meta['answer'] with confidence task.meta['conf']."""
    return FunctionAgent(name, lambda t: (t.meta["answer"], t.meta["conf"]))


# ---------------------------------------------------------------- Route
def test_route_sends_each_task_to_the_agent_its_label_names(router):
    route = Route(
        ClassifierAgent("router", router),
        {
            "cards": const("card-desk", "blocked your card"),
            "transfers": const("pay-desk", "traced"),
        },
        default="cards",
    )
    card, transfer, account = route.run_batch(
        ["my card was stolen", "my transfer never arrived", "close my account please"]
    )
    assert card.output == "blocked your card" and card.agents == ["router", "route", "card-desk"]
    assert transfer.output == "traced" and transfer.agents[-1] == "pay-desk"
    assert "route -> transfers" in transfer.path[1].decision
    assert account.agents[-1] == "card-desk"  # 'account' has no route: the default handles it


def test_route_reports_unknown_labels_and_router_errors():
    route = Route(FunctionAgent("router", lambda t: (t.text, 0.9)), {"a": const("A", "ok")})
    known, unknown, empty = route.run_batch(["a", "zzz", ""])
    assert known.output == "ok"
    assert unknown.error == "router returned unknown label 'zzz'; routes: ['a']"
    assert unknown.output is None and unknown.agents == ["router", "route"]
    assert empty.error == "task text is empty"
    with pytest.raises(ValueError, match="default 'b' is not a route"):
        Route(const("r", "a"), {"a": const("A", "ok")}, default="b")


# ---------------------------------------------------------------- Pipeline
def test_pipeline_feeds_each_stage_and_can_stop_early():
    draft = FunctionAgent("draft", lambda t: (f"draft({t.text})", 0.4))
    flag = Stage(
        FunctionAgent("check", lambda t: (t.text, 0.0 if "safe" in t.text else 0.9)),
        stop=lambda r: r.confidence == 0.0,  # nothing suspicious: stop here
    )
    explain = Stage(FunctionAgent("explain", lambda t: (f"explained {t.text}", 0.8)))
    pipe = Pipeline([draft, flag, explain])
    flagged, safe = pipe.run_batch(["claim", "safe claim"])
    assert flagged.output == "explained draft(claim)"
    assert flagged.agents == ["draft", "check", "explain"]
    assert safe.output == "draft(safe claim)" and safe.agents == ["draft", "check", "pipeline"]


def test_pipeline_stops_a_task_at_its_first_error():
    def picky(t: Task):
        if "bad" in t.text:
            raise ValueError("cannot draft this")
        return t.text, 1.0

    pipe = Pipeline([FunctionAgent("draft", picky), const("finish", "done")])
    good, bad = pipe.run_batch(["good", "bad"])
    assert good.output == "done"
    assert bad.error == "ValueError: cannot draft this" and bad.agents == ["draft"]


# ---------------------------------------------------------------- ParallelVerify
def test_parallel_verify_accepts_corrects_and_rejects():
    slm = by_meta("slm")
    llm = FunctionAgent("llm", lambda t: (t.meta["truth"], t.meta["vconf"]))
    verify = ParallelVerify(slm, llm, min_verifier_confidence=0.5)
    agree, fix, unsure = verify.run_batch(
        [
            Task("q1", meta={"answer": "Paris", "conf": 0.6, "truth": "paris", "vconf": 0.9}),
            Task("q2", meta={"answer": "Lyon", "conf": 0.6, "truth": "Paris", "vconf": 0.9}),
            Task("q3", meta={"answer": "Nice", "conf": 0.6, "truth": "Paris", "vconf": 0.2}),
        ]
    )
    assert agree.meta["verdict"] == "accept" and agree.output == "Paris"
    assert fix.meta["verdict"] == "correct" and fix.output == "Paris"
    assert unsure.meta["verdict"] == "reject" and unsure.output is None and unsure.error
    assert agree.agents == ["slm", "llm", "verify"]


def test_parallel_verify_runs_both_agents_at_once():
    verify = ParallelVerify(const("slm", "x", sleep=0.3), const("llm", "x", sleep=0.3))
    [result] = verify.run_batch(["q"])
    draft, check = result.path[0], result.path[1]
    assert draft.start_s < check.end_s and check.start_s < draft.end_s  # the intervals overlap
    assert result.meta["sequential_latency_s"] > result.latency_s


# ---------------------------------------------------------------- Cascade
def test_cascade_escalates_only_below_the_threshold():
    cascade = Cascade(by_meta("slm"), const("llm", "big answer", 0.95), threshold=0.7)
    sure, unsure = cascade.run_batch(
        [
            Task("a", meta={"answer": "small", "conf": 0.9}),
            Task("b", meta={"answer": "small", "conf": 0.3}),
        ]
    )
    assert sure.output == "small" and sure.agents == ["slm", "cascade"]
    assert "accept: 0.90 >= 0.70" in sure.path[1].decision
    assert unsure.output == "big answer" and unsure.agents == ["slm", "cascade", "llm"]
    assert "escalate: 0.30 < 0.70" in unsure.path[1].decision
    assert unsure.cost == pytest.approx(sum(s.cost for s in unsure.path))


def test_cascade_escalates_small_model_errors():
    def fragile(t: Task):
        raise RuntimeError("model emitted garbage")

    [r] = Cascade(FunctionAgent("slm", fragile), const("llm", "fixed"), threshold=0.1).run_batch(
        ["q"]
    )
    assert r.ok and r.output == "fixed" and "garbage" in r.path[1].decision


def test_cascade_maps_the_large_answer_onto_the_small_agents_fields():
    router = by_meta("router")
    shaped = Cascade(router, const("llm", "transfers"), threshold=0.7, answer_field="department")
    plain = Cascade(router, const("llm", "transfers"), threshold=0.7)
    tasks = [
        Task("a", meta={"answer": {"intent": "card_arrival", "department": "cards"}, "conf": 0.9}),
        Task(
            "b", meta={"answer": {"intent": "top_up_failed", "department": "top_up"}, "conf": 0.2}
        ),
    ]
    accepted, escalated = shaped.run_batch(tasks)
    assert accepted.output == {"intent": "card_arrival", "department": "cards"}
    assert escalated.output == {"intent": "top_up_failed", "department": "transfers"}
    assert plain.run_batch(tasks)[1].output == "transfers"  # without it: two shapes
    # a dict answer gives its own answer_field
    review = const("review", {"review": "queued"})
    [queued] = Cascade(router, review, threshold=0.7, answer_field="department").run_batch(
        tasks[1:]
    )
    assert queued.output == {"intent": "top_up_failed", "department": None}


def test_calibration_hits_a_target_share_or_accuracy():
    conf = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    small_ok = [False, False, False, True, True, True, True, True, True, True]
    large_ok = [True] * 10
    share = calibrate_threshold(conf, small_ok, large_ok, target_share=0.3)
    assert sum(c < share for c in conf) == 3
    accurate = calibrate_threshold(conf, small_ok, large_ok, target_accuracy=1.0)
    assert sum(c < accurate for c in conf) == 3  # the three wrong ones, and no more
    with pytest.raises(ValueError, match="exactly one"):
        calibrate_threshold(conf, small_ok, large_ok)
    # thresholds fall between observed confidences and stay valid for Cascade
    for target in (0.0, 0.3, 0.55, 1.0):
        t = calibrate_threshold(conf, small_ok, large_ok, target_share=target)
        assert t not in conf and 0.0 <= t <= 1.0
        Cascade(by_meta("s"), by_meta("l"), threshold=t)


def test_cascade_calibrates_on_a_labelled_sample(router):
    small = ClassifierAgent("minilm", router)
    large = FunctionAgent("oracle", lambda t: (t.meta["label"], 1.0))
    texts = ["my card is lost", "send money to my son", "close my account", "card PIN blocked"]
    labels = ["cards", "transfers", "account", "cards"]
    tasks = [Task(t, meta={"label": y}) for t, y in zip(texts, labels, strict=True)]
    cascade = Cascade(small, large)
    point = cascade.calibrate(tasks, labels, target_share=0.25)
    assert point["escalated"] <= 0.25 and cascade.threshold == point["threshold"]


# ---------------------------------------------------------------- composition
def test_patterns_compose_a_cascade_over_a_route(slm, router):
    """Route tickets to desks; an unsure desk's answer escalates to the LLM tier (the SLM here)."""
    desk_confidence = {"cards": 1.0, "transfers": 1.0, "account": 0.5}
    desks = {label: const(f"{label}-desk", label, c) for label, c in desk_confidence.items()}
    routed = Route(ClassifierAgent("router", router), desks)
    llm = LLMAgent("llm", slm, prompt="Which bank department handles: {text}", max_new_tokens=8)
    card, account = Cascade(routed, llm, threshold=0.7).run_batch(
        ["my card is lost", "close my account"]
    )
    assert card.agents == ["router", "route", "cards-desk", "cascade"]
    assert account.agents == ["router", "route", "account-desk", "cascade", "llm"]
    assert account.usage_by_agent()["llm"]["completion_tokens"] > 0
    assert account.cost > card.cost
