"""Team: agents by name, so requests, plans and specs can refer to them as text.

A planner's JSON plan or a YAML team spec names agents as strings; a name that is not in the
team is a bad request, not a crash: ``team.run_batch("nope", tasks)`` returns one error Result
per task naming the agents that exist, and the rest of the work goes on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from slm_agents.agent import Agent, failed, split_valid
from slm_agents.result import Result, Task


class UnknownAgentError(KeyError):
    """A name that is not in the team; the message lists the names that are."""

    def __str__(self) -> str:
        return str(self.args[0])


class Team(Mapping[str, Agent]):
    def __init__(self, agents: Mapping[str, Agent] | Sequence[Agent]):
        pairs = (
            list(agents.items()) if isinstance(agents, Mapping) else [(a.name, a) for a in agents]
        )
        names = [name for name, _ in pairs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"agent names must be unique in a team; repeated: {duplicates}")
        if not pairs:
            raise ValueError("a team needs at least one agent")
        self._agents = dict(pairs)

    def __getitem__(self, name: str) -> Agent:
        try:
            return self._agents[name]
        except KeyError as exc:
            raise UnknownAgentError(
                f"no agent named {name!r}; the team has {sorted(self._agents)}"
            ) from exc

    def __iter__(self) -> Iterator[str]:
        return iter(self._agents)

    def __len__(self) -> int:
        return len(self._agents)

    def shutdown(self) -> None:
        """Stop the agents that hold resources (Ray actors); in-process agents have none."""
        for agent in self._agents.values():
            stop = getattr(agent, "shutdown", None)
            if callable(stop):
                stop()

    def run_batch(self, name: str, tasks: Sequence[str | Task]) -> list[Result]:
        """Run ``tasks`` on the agent called ``name``; an unknown name fails each task alone."""
        if name in self._agents:
            return self._agents[name].run_batch(tasks)
        message = str(UnknownAgentError(f"no agent named {name!r}; the team has {sorted(self)}"))
        valid, errors = split_valid(tasks, name)
        ran = iter(failed(task, name, message) for task in valid)
        return [errors[i] if i in errors else next(ran) for i in range(len(tasks))]
