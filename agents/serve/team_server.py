"""A team spec served as one model, ``team:<name>``: any OpenAI client can call the whole system.

The chat completion runs the team on the last user message; the answer is the message content
(JSON text for structured outputs) and the ``slm_agents`` field says how it was reached:
confidence, the path of agents and decisions, escalations, tokens and cost.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slm_agents.result import Result, Task
from slm_agents.runtime.batching import DynamicBatcher


def team_answer(result: Result) -> dict[str, Any]:
    """The wire answer of one team Result (see ``model_server.ModelServer.answer``)."""
    if not result.ok:
        return {
            "error": {
                "status": 422,
                "message": f"the team could not answer: {result.error}",
                "type": "agent_error",
            }
        }
    output = result.output
    text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
    prompt_tokens = sum(s.prompt_tokens for s in result.path)
    completion_tokens = sum(s.completion_tokens for s in result.path)
    return {
        "text": text,
        "finish_reason": "stop",
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "tokens": None,
        "slm_agents": {
            "confidence": result.confidence,
            "path": [
                {"agent": s.agent, "kind": s.kind, "decision": s.decision or None}
                for s in result.path
            ],
            "escalations": sum(s.decision.startswith("escalate") for s in result.path),
            "tokens": prompt_tokens + completion_tokens,
            "cost_usd": result.cost,
            "latency_s": result.latency_s,
        },
    }


class TeamServer:
    """The deployment class of one team; built like ``slm-agents run`` builds it."""

    def __init__(self, spec_path: str, batch: dict[str, Any], track: bool = False):
        from slm_agents import tracking
        from slm_agents.runtime.worker import prepare_worker
        from slm_agents.teamspec import load_team_spec

        prepare_worker(threads=None)
        if not track:
            tracking.disable()
        self.spec = load_team_spec(spec_path)
        self.team, self.entry = self.spec.build()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="team")
        self._batcher = DynamicBatcher(self._run_batch, batch["max_batch_size"], batch["wait_s"])

    async def run(self, text: str) -> dict[str, Any]:
        return await self._batcher.submit(text)

    async def _run_batch(self, texts: list[str]) -> list[dict[str, Any]]:
        """Requests that arrive together run as one ``run_batch`` of the team."""
        loop = asyncio.get_running_loop()
        tasks = [Task(text=text) for text in texts]
        results = await loop.run_in_executor(self._pool, self.entry.run_batch, tasks)
        return [team_answer(r) for r in results]
