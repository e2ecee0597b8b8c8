"""The flywheel: logged LLM-tier calls become SLM specialists (``docs/flywheel.md``).

Six steps (the LLM-to-SLM conversion of arXiv 2506.02153):

1. **collect** (built): LLM-tier calls exported from MLflow traces (:mod:`.collect`), or read
   from call logs, our JSONL shape or OpenAI chat format (:mod:`.calls`);
2. **curate** (built, :mod:`.curate`): failed, invalid and near-duplicate calls dropped
   (embeddings: :mod:`.embed`), personal data still present redacted, a split by time that
   never splits a conversation;
3. **cluster** (built, :mod:`.cluster`): the recurring tasks found without labels (by the
   shape of the answers, then k-means on the inputs with k by silhouette), named by their top
   terms, with each one's output type
   (:mod:`.output_types`) and share of calls and cost;
4. **select** (built, :mod:`.select`; one call's agreement with the LLM: :mod:`.agreement`)
   and 5. **fine-tune** (built, :mod:`.candidates`): per cluster, the cheapest SLM trained
   on its calls that keeps enough of them at a calibrated Cascade threshold;
6. **deploy** (built, :mod:`.deploy`): a team spec, a cluster router sending each request to
   its cluster's SLM under a Cascade to the LLM tier.

:mod:`.runner` runs steps 2-6 in one go (``slm-agents flywheel run``) and goes on from an
earlier run; :mod:`.evaluate` scores the team on unseen calls (``slm-agents flywheel
evaluate``); :mod:`.report` writes the report; :mod:`.stream` builds a mixed stream of logged
calls from the bundled data sets (benchmarks and tests).

Heavy libraries (mlflow, torch, Presidio) load inside the functions that need them.
"""

from slm_agents.finetune.flywheel.agreement import agreement
from slm_agents.finetune.flywheel.calls import Call, CallLog, CallLogError, read_calls, write_calls
from slm_agents.finetune.flywheel.candidates import Candidate, CandidateUnfit, train_candidate
from slm_agents.finetune.flywheel.cluster import Cluster, Clustering, cluster_calls
from slm_agents.finetune.flywheel.collect import Collected, CollectError, collect_calls
from slm_agents.finetune.flywheel.curate import Curated, CurateError, curate
from slm_agents.finetune.flywheel.deploy import DeployError, write_team
from slm_agents.finetune.flywheel.embed import embed_texts
from slm_agents.finetune.flywheel.evaluate import evaluate_team
from slm_agents.finetune.flywheel.output_types import OutputType, detect_output_type
from slm_agents.finetune.flywheel.plan import ClusterPlan, Specialist
from slm_agents.finetune.flywheel.report import write_report
from slm_agents.finetune.flywheel.runner import FlywheelError, FlywheelRun, run_flywheel
from slm_agents.finetune.flywheel.select import select_specialist
from slm_agents.finetune.flywheel.stream import MixedStream, build_stream, next_week

__all__ = [
    "Call",
    "CallLog",
    "CallLogError",
    "Candidate",
    "CandidateUnfit",
    "Cluster",
    "ClusterPlan",
    "Clustering",
    "CollectError",
    "Collected",
    "CurateError",
    "Curated",
    "DeployError",
    "FlywheelError",
    "FlywheelRun",
    "MixedStream",
    "OutputType",
    "Specialist",
    "agreement",
    "build_stream",
    "cluster_calls",
    "collect_calls",
    "curate",
    "detect_output_type",
    "embed_texts",
    "evaluate_team",
    "next_week",
    "read_calls",
    "run_flywheel",
    "select_specialist",
    "train_candidate",
    "write_calls",
    "write_report",
    "write_team",
]
