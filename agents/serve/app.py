"""Building the Ray Serve application from a serve config, and running it until stopped.

One deployment per model (its replicas, resources, batching and queue bounds from the config),
one per team, and the OpenAI ingress in front, which holds no model and needs no CPU of its own.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from typing import Any

from slm_agents.serve.config import ServeConfig

APP_NAME = "slm-agents"
CONTROL_LOOP_INTERVAL_S = "1.0"  # Serve's default 0.1; a deployment change takes <= 1 s longer


def build_app(config: ServeConfig, api_key: str | None = None) -> Any:
    """The bound Serve application (``serve.run`` it). ``api_key``: requests must send it."""
    from ray import serve

    from slm_agents.serve.ingress import Ingress, key_digest
    from slm_agents.serve.model_server import ModelServer
    from slm_agents.serve.team_server import TeamServer

    models, adapters, timeouts = {}, {}, {}
    for entry in config.models:
        timeouts[entry.model_id] = entry.request_timeout_s or config.request_timeout_s
        paths = entry.adapter_paths(config.base)
        deployment = serve.deployment(ModelServer, name=f"model-{entry.model_id}")
        deployment = deployment.options(**entry.deployment.serve_options())
        settings = entry.model_dump() | {"model": entry.model_location(config.base),
                                         "id": entry.model_id}  # fmt: skip
        models[entry.model_id] = deployment.bind(settings, paths, entry.torch_threads)
        adapters[entry.model_id] = sorted(paths)
    teams = {}
    for name, team in config.teams.items():
        deployment = serve.deployment(TeamServer, name=f"team-{name}")
        deployment = deployment.options(**team.deployment.serve_options())
        teams[name] = deployment.bind(
            str(config.base / team.spec), team.deployment.batch.model_dump()
        )
    ingress = serve.deployment(Ingress, name="openai").options(
        num_replicas=1, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=10_000
    )
    for name in teams:
        timeouts["team:" + name] = config.request_timeout_s
    return ingress.bind(models, teams, adapters, key_digest(api_key), timeouts)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def start(
    config: ServeConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    address: str | None = None,
) -> str:
    """Start Ray (or join ``address``), deploy, wait until healthy; returns the base URL."""
    from ray import serve

    from slm_agents.runtime.hosting import ensure_ray

    if not port_is_free(host, port):  # before joining Ray: a failure here touches nothing
        raise OSError(f"port {port} on {host} is in use; pick another with --port")
    # A local cluster runs its workers at nice 0: the replicas are the model servers (niced
    # ones measured ~50% slower beside any busy neighbour; docs/architecture.md).
    if not (address or os.environ.get("RAY_ADDRESS")):
        # Serve's controller checks every deployment 10 times a second (5% of a core here);
        # a model's two torch threads lose more than that to any neighbour. Its own cluster
        # only: an existing cluster keeps its settings. The environment variable overrides.
        os.environ.setdefault("RAY_SERVE_CONTROL_LOOP_INTERVAL_S", CONTROL_LOOP_INTERVAL_S)
    ensure_ray(address)
    shared = _shared(address)
    try:
        serve.start(http_options={"host": host, "port": port})
        if APP_NAME in serve.status().applications:  # another server's: never replace it
            raise RuntimeError(
                f"a Serve application named {APP_NAME!r} already runs on this Ray cluster "
                "(another slm-agents serve); stop it first or use a cluster of its own"
            )
    except BaseException:
        _disconnect()
        raise
    try:
        serve.run(build_app(config, api_key), name=APP_NAME, route_prefix="/", blocking=False)
        _wait_healthy(f"http://{host}:{port}/health")
    except BaseException:
        stop(shared)  # what we deployed, and nothing else
        raise
    return f"http://{host}:{port}/v1"


def _shared(address: str | None) -> bool:
    """Whether Ray was there before us (an address, or RAY_ADDRESS): then only our app goes."""
    import os

    return bool(address or os.environ.get("RAY_ADDRESS"))


def _disconnect() -> None:
    import ray

    ray.shutdown()


def _wait_healthy(url: str, timeout_s: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the server did not answer {url} within {timeout_s:g} s")
        time.sleep(0.5)


def stop(shared: bool = False) -> None:
    """Take the application down and disconnect. ``shared``: the Ray cluster was there before
    us (``--address``), so only our application is deleted, not Serve and its other apps."""
    import ray
    from ray import serve
    from ray.serve.exceptions import RayServeException

    try:
        if shared:
            serve.delete(APP_NAME)
        else:
            serve.shutdown()
    except RayServeException:  # nothing was deployed (start failed): nothing to take down
        pass
    finally:
        ray.shutdown()


def serve_until_stopped(config: ServeConfig, on_ready: Any = print, **options: Any) -> None:
    """``start``, report the base URL, then wait for Ctrl-C or SIGTERM and stop cleanly."""
    stopped = threading.Event()
    previous: dict[int, Any] = {}
    base_url = start(config, **options)  # a failed start has cleaned up after itself
    try:
        # After ray.init, which installs a SIGTERM handler of its own that aborts the process.
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stopped.set())
        on_ready(base_url)
        while not stopped.wait(0.5):
            pass
    finally:
        stop(shared=_shared(options.get("address")))
        for sig, handler in previous.items():
            signal.signal(sig, handler)
