"""Route: a router agent labels each task, the label picks the agent that handles it.

The router is any Agent whose output is a label: a classifier, rules, an LLM. Typical use:
simple, frequent work to an SLM, the rest to the LLM tier. A label with no route goes to
``default`` if given, else becomes an error Result naming the label and the known routes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from slm_agents.agent import Agent, merge, split_valid
from slm_agents.patterns.base import chain, decision
from slm_agents.result import Result, Task, shown


class Route(Agent):
    def __init__(
        self,
        router: Agent,
        routes: Mapping[str, Agent],
        *,
        default: str | None = None,
        name: str = "route",
    ):
        if not routes:
            raise ValueError("Route needs at least one route")
        if default is not None and default not in routes:
            raise ValueError(f"default {default!r} is not a route; routes: {sorted(routes)}")
        self.router, self.routes, self.default, self.name = router, dict(routes), default, name

    def run_batch(self, tasks: Sequence[str | Task]) -> list[Result]:
        valid, errors = split_valid(tasks, self.name)
        labelled = self.router.run_batch(valid) if valid else []
        groups: dict[str, list[int]] = {}
        out: list[Result | None] = [None] * len(valid)
        for i, routed in enumerate(labelled):
            if not routed.ok:
                out[i] = routed
                continue
            label = str(routed.output)
            target = label if label in self.routes else self.default
            if target is None:
                message = f"router returned unknown label {label!r}; routes: {sorted(self.routes)}"
                out[i] = chain(routed, decision(self.name, message), then=None)
                out[i].error, out[i].output = message, None
                continue
            groups.setdefault(target, []).append(i)
        # Desks run at once (each agent queues its own calls), so one desk's batch never
        # waits behind another's.
        running = {
            target: self.routes[target].submit([valid[i] for i in positions])
            for target, positions in groups.items()
        }
        for target, positions in groups.items():
            for i, result in zip(positions, running[target].result(), strict=True):
                why = f"route -> {target} ({labelled[i].output!r}, {shown(labelled[i].confidence)})"
                out[i] = chain(
                    labelled[i], decision(self.name, why, labelled[i].confidence), then=result
                )
        return merge(len(tasks), errors, out)  # type: ignore[arg-type]
