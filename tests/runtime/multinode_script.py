"""Run by test_multinode.py in a fresh process: a simulated 2-node cluster loses a node.

The head has 1 CPU and the worker node 2, so an agent asking for 2 CPUs lands on the worker.
Mid-batch the worker node is removed and a replacement joins; Ray restarts the actor there and
retries the in-flight requests. Prints one line, REPORT {json}, with what happened.
"""

from __future__ import annotations

import json
import threading
import time

import ray
from ray.cluster_utils import Cluster

from slm_agents.result import Task
from slm_agents.runtime import AgentSpec, HostingConfig, RayAgent

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
doomed = cluster.add_node(num_cpus=2)
ray.init(address=cluster.address, log_to_driver=False)
cluster.wait_for_nodes()

spec = AgentSpec("writer", "llm", "smollm2-135m-instruct", max_new_tokens=32, device="cpu")
agent = RayAgent(spec, hosting=HostingConfig(num_cpus=2, max_batch_size=4, max_retries=3))
first_node = ray.get(agent.actors[0].info.remote())
node_before = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU") == 2]


tasks = [Task(f"Write a sentence about the number {i}.", id=f"t{i}") for i in range(4)]
results = []
# The batch runs in a thread: Cluster.add_node installs signal handlers, main thread only.
batch = threading.Thread(target=lambda: results.extend(agent.run_batch(tasks)))
batch.start()
time.sleep(1.5)
cluster.remove_node(doomed)  # the node and the actor on it are gone
cluster.add_node(num_cpus=2)  # capacity comes back elsewhere
batch.join()
node_after = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU") == 2]
print(  # marked: Ray's log monitor may print its own lines to stdout around it
    "REPORT "
    + json.dumps(
        {
            "task_ids": [r.task_id for r in results],
            "ok": [r.ok for r in results],
            "errors": [r.error for r in results],
            "pid_before": first_node["pid"],
            "pid_after": ray.get(agent.actors[0].info.remote())["pid"],
            "nodes_changed": node_before != node_after,
        }
    )
)
ray.shutdown()
cluster.shutdown()
