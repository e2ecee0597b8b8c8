"""The flywheel: logged LLM-tier calls become SLM specialists (``docs/flywheel.md``).

Six steps (the LLM-to-SLM conversion of arXiv 2506.02153):

1. **collect** (built): LLM-tier calls exported from MLflow traces (:mod:`.collect`), or read
   from call logs, our JSONL shape or OpenAI chat format (:mod:`.calls`);
2. **curate** (built, :mod:`.curate`): failed, invalid and near-duplicate calls dropped
   (embeddings: :mod:`.embed`), personal data still present redacted, a split by time that
   never splits a conversation;
3. **cluster**: the recurring tasks found without labels, and each one's output type (in
   progress: :mod:`.cluster`, :mod:`.output_types`);
4. **select**, 5. **fine-tune**, 6. **deploy**: not built yet.

Heavy libraries (mlflow, torch, Presidio) load inside the functions that need them.
"""

from slm_agents.finetune.flywheel.calls import Call, CallLog, CallLogError, read_calls, write_calls
from slm_agents.finetune.flywheel.collect import Collected, CollectError, collect_calls
from slm_agents.finetune.flywheel.curate import Curated, CurateError, curate
from slm_agents.finetune.flywheel.embed import embed_texts

__all__ = [
    "Call",
    "CallLog",
    "CallLogError",
    "CollectError",
    "Collected",
    "CurateError",
    "Curated",
    "collect_calls",
    "curate",
    "embed_texts",
    "read_calls",
    "write_calls",
]
