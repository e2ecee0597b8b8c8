"""S5, fine-tune: the SLMs that may take a cluster over, and how each is trained on its calls.

One kind of candidate per output type, tried cheapest first (their price per call at the price
table decides the order):

- **classification**: ``encoder-classifier``, the bundled MiniLM (``all-minilm-l6-v2``) with a
  LoRA classifier head trained by :func:`~slm_agents.finetune.classifier.train_classifier` on
  (call input -> the LLM's label). Its agent is kind ``classifier``; its confidence is the
  label's probability.
- **extraction**: ``smollm2-135m-lora``, a LoRA adapter on SmolLM2-135M-Instruct trained by
  :func:`~slm_agents.finetune.sft.train_sft` with the receipt extractor's settings
  (:data:`~slm_agents.finetune.recipes.EXTRACTOR_SETTINGS`, bf16 autocast where the CPU has
  it) on (an instruction naming the keys + the call input -> the answer as JSON). Its agent
  is kind ``llm`` with a JSON schema of the keys (the types observed, strings bounded), so
  constrained decoding emits exactly the shape it was trained on.
- **generation**: the same adapter without a schema; the prompt is the call input itself.
- ``gemma-3-270m-lora`` for extraction and generation: the pricier second try. The bundled
  Gemma 3 270M is a base model whose converted tokenizer has no chat template, and an ``llm``
  agent prompts in chat form, so it is recorded as unfit (with that reason) rather than
  trained, until a chat-templated copy is configured.

Training and inference use one prompt: the chat examples are rendered by the tokenizer's chat
template from the message ``prompt.format(text=input)``, exactly the message an ``llm`` agent
builds from the same template (``fill_prompt``) and renders with the same template.

Each run gets a time limit (``TrainConfig.max_minutes``), writes into its own folder (emptied
first: a retrain starts from scratch) and, tracked, registers the model in MLflow, tags its
training run and model version with the cluster, and logs the ids of the calls it learned from
as ``trained_on.json`` in that run.
"""

from __future__ import annotations

import functools
import json
import math
import re
import shutil
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slm_agents.finetune.flywheel.calls import Call
from slm_agents.finetune.recipes import EXTRACTOR_SETTINGS, EXTRACTOR_TRAIN
from slm_agents.pricing import DEFAULT_TABLE, PriceTable

MAX_SFT_LENGTH = 2048  # tokens per training row (prompt + answer): CPU memory and time
MAX_NEW_TOKENS = 4096  # a team-spec agent's ceiling
CHECKPOINT = "checkpoint"  # the loop's resumable state inside a model folder (not deployed)


@dataclass(frozen=True)
class Candidate:
    """One kind of SLM a cluster may move to. ``settings`` and ``train`` override the recipe's
    model settings (ClassifierSettings or SFTSettings) and loop settings (TrainConfig)."""

    name: str
    base: str  # the base model, as the price table and the model catalog name it
    recipe: str  # "classifier" or "sft"
    kinds: tuple[str, ...]  # the output types it serves
    settings: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)

    def serves(self, kind: str) -> bool:
        return kind in self.kinds


ENCODER_CLASSIFIER = Candidate(
    "encoder-classifier",
    "all-minilm-l6-v2",
    "classifier",
    ("classification",),
    settings={"max_length": 128},
    train={"epochs": 3, "batch_size": 16, "warmup_steps": 10},
)
SMOLLM2_LORA = Candidate(
    "smollm2-135m-lora",
    "smollm2-135m-instruct",
    "sft",
    ("extraction", "generation"),
    settings={k: v for k, v in EXTRACTOR_SETTINGS.items() if k != "max_length"},
    train=EXTRACTOR_TRAIN,
)
GEMMA3_LORA = Candidate(
    "gemma-3-270m-lora",
    "gemma-3-270m",
    "sft",
    ("extraction", "generation"),
    settings=SMOLLM2_LORA.settings,
    train=EXTRACTOR_TRAIN,
)
CANDIDATES = (ENCODER_CLASSIFIER, SMOLLM2_LORA, GEMMA3_LORA)


class CandidateUnfit(ValueError):
    """This candidate cannot serve this cluster (no chat template, no usable calls); why."""


@dataclass
class Trained:
    """A trained candidate: its folder, its team-spec agent entry, and how it was made."""

    candidate: str
    folder: Path
    agent: dict[str, Any]  # paths relative to the flywheel's output folder
    seconds: float  # wall time of the training call (loading, tokenizing, training, saving)
    trained_on: list[str]  # ids of the calls it learned from
    dropped: dict[str, int]  # calls left out, by reason
    model_version: str | None = None
    stopped: str = "completed"  # the loop's reason to stop (time-budget, early-stopping, ...)


@dataclass
class SFTTask:
    """A cluster's calls as LoRA SFT data, and the agent settings that match them."""

    prompt: str  # the str.format template, with {text}
    data: Any  # ChatData
    json_schema: dict[str, Any] | None
    max_new_tokens: int
    max_length: int
    call_ids: list[str]
    dropped: dict[str, int]


def candidates_for(
    kind: str,
    calls: Sequence[Call],
    prices: PriceTable = DEFAULT_TABLE,
    candidates: Sequence[Candidate] = CANDIDATES,
) -> list[tuple[Candidate, float]]:
    """The candidates that serve ``kind``, cheapest first, each with its estimated price per
    call: the calls' mean logged token counts at the candidate's base-model price."""
    n = max(len(calls), 1)
    prompt = sum(c.prompt_tokens for c in calls) / n
    completion = sum(c.completion_tokens for c in calls) / n
    priced = [(c, prices.cost(c.base, prompt, completion)) for c in candidates if c.serves(kind)]
    return sorted(priced, key=lambda pair: pair[1])  # stable: equal prices keep their order


def train_candidate(
    candidate: Candidate,
    kind: str,
    calls: Sequence[Call],
    out_dir: str | Path,
    folder: str,
    *,
    cluster: str,
    cluster_id: int,
    keys: Sequence[str] = (),
    max_minutes: float | None = None,
    track: bool = True,
    progress: bool = True,
) -> Trained:
    """Train ``candidate`` on ``calls`` into ``out_dir/folder`` (emptied first).

    ``keys`` are an extraction cluster's fields (the modal key set of the answers when empty).
    Raises :class:`CandidateUnfit` (a ValueError) when the candidate cannot learn these calls,
    and the recipes' DataError/ValueError for data they refuse (one label only).
    """
    from slm_agents.finetune.loop import TrainConfig

    out_dir = Path(out_dir)
    target = out_dir / folder
    shutil.rmtree(target, ignore_errors=True)
    train = dict(candidate.train)
    if max_minutes is not None:
        train["max_minutes"] = min(max_minutes, train.get("max_minutes") or max_minutes)
    config = TrainConfig(**train)
    register_as = registered_name(cluster, candidate.name) if track else None
    relative = target.relative_to(out_dir).as_posix()
    run = (target, relative, config, track, progress, register_as)
    started = time.monotonic()
    if candidate.recipe == "classifier":
        trained = _train_classifier(candidate, calls, *run)
    elif candidate.recipe == "sft":
        trained = _train_lora(candidate, kind, calls, *run, keys=keys)
    else:
        raise ValueError(f"candidate {candidate.name!r}: unknown recipe {candidate.recipe!r}")
    trained.seconds = round(time.monotonic() - started, 2)
    shutil.rmtree(target / CHECKPOINT, ignore_errors=True)  # resumable state, not the model
    if trained.model_version is not None:
        tags = {
            "flywheel.cluster": cluster,
            "flywheel.cluster_id": str(cluster_id),
            "flywheel.candidate": candidate.name,
        }
        record_training(register_as, trained.model_version, tags, trained.trained_on)
    return trained


def registered_name(cluster: str, candidate: str) -> str:
    """The MLflow registered-model name of a cluster's candidate: one name, a version a run."""
    return f"flywheel-{slug(cluster)}-{candidate}"


def slug(name: str) -> str:
    """``name`` as a folder and registry name: letters, digits, ``_ . -`` only."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "cluster"


def record_training(name: str, version: str, tags: dict[str, str], call_ids: list[str]) -> None:
    """Tag the model version and its training run, and log ``trained_on.json`` in that run.

    After the recipe's run has closed (the recipes open and close their own runs), so through
    the client; failing open like all tracking: a broken store warns once and skips this.
    """
    from slm_agents import tracking

    def record() -> None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        run_id = client.get_model_version(name, version).run_id
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
            client.set_model_version_tag(name, version, key, value)
        trained_on = {**{k.removeprefix("flywheel."): v for k, v in tags.items()},
                      "call_ids": list(call_ids)}  # fmt: skip
        client.log_dict(run_id, trained_on, "trained_on.json")

    tracking.get_tracker().fail_open(record)


# ------------------------------------------------------------------- the encoder classifier
def label_of(output: Any) -> str | None:
    """A logged answer as a class label (stripped text), or None when it is no label."""
    if isinstance(output, bool):
        return str(output).lower()
    if isinstance(output, int | float | str):
        return str(output).strip() or None
    return None


def _train_classifier(
    candidate: Candidate,
    calls: Sequence[Call],
    target: Path,
    relative: str,
    config: Any,
    track: bool,
    progress: bool,
    register_as: str | None,
) -> Trained:
    from slm_agents.finetune.classifier import ClassifierSettings, train_classifier
    from slm_agents.finetune.data import LabelledTexts

    kept = [(call, label_of(call.output)) for call in calls]
    kept = [(call, label) for call, label in kept if label is not None]
    dropped = {"not a label": len(calls) - len(kept)} if len(kept) < len(calls) else {}
    if not kept:
        raise CandidateUnfit(f"{candidate.name}: none of the {len(calls)} answers is a label")
    data = LabelledTexts(
        [call.input for call, _ in kept], [label for _, label in kept], f"flywheel:{target}"
    )
    result = train_classifier(
        data,
        target,
        settings=ClassifierSettings(base=candidate.base, **candidate.settings),
        config=config,
        progress=progress,
        track=track,
        register_as=register_as,
    )
    return Trained(
        candidate.name,
        target,
        {"kind": "classifier", "model": relative},
        0.0,
        [call.id for call, _ in kept],
        dropped,
        result.model_version,
        result.report.stopped,
    )


# --------------------------------------------------------------------- the LoRA causal LMs
@functools.cache
def base_tokenizer(base: str) -> Any:
    """The tokenizer of a causal base model, loaded as the SFT recipe and CausalLM load it."""
    from transformers import AutoTokenizer

    from slm_agents.models.sources import ensure_converted, resolve

    resolved = resolve(base)
    location = str(ensure_converted(resolved)) if resolved.gguf_file else resolved.location
    return AutoTokenizer.from_pretrained(location)


def build_sft_task(
    kind: str, calls: Sequence[Call], tokenizer: Any, keys: Sequence[str] = ()
) -> SFTTask:
    """The chat examples, prompt template, schema and token limits for ``calls``.

    Extraction: calls whose answer lacks one of ``keys`` are left out (not the cluster's
    shape); every kind: answers too long to train on (over :data:`MAX_SFT_LENGTH` tokens).
    """
    from slm_agents.finetune.sft_data import ChatData, ChatExample

    if kind == "extraction":
        objects = [_as_object(call.output) for call in calls]
        keys = list(keys) or _modal_keys(objects)
        if not keys:
            raise CandidateUnfit("no answer is a JSON object: nothing to extract")
        pairs = [
            (call, {k: obj[k] for k in keys})
            for call, obj in zip(calls, objects, strict=True)
            if obj is not None and all(k in obj for k in keys)
        ]
        dropped = {"not the cluster's fields": len(calls) - len(pairs)}
        prompt = extraction_prompt(keys)
        schema = json_schema([answer for _, answer in pairs], keys)
        answers = [(call, constrained_json(answer)) for call, answer in pairs]
    elif kind == "generation":
        answers = [(call, _as_text(call.output)) for call in calls]
        answers = [(call, text) for call, text in answers if text and text.strip()]
        dropped = {"no text answer": len(calls) - len(answers)}
        prompt, schema = "{text}", None
    else:
        raise CandidateUnfit(f"a causal LM adapter is not trained for {kind!r} calls")

    examples, ids, lengths, answer_tokens = [], [], [], []
    too_long = 0
    for call, answer in answers:
        messages = [{"role": "user", "content": prompt.format(text=call.input)}]
        rendered = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        n_prompt = len(tokenizer(rendered, add_special_tokens=False)["input_ids"])
        n_answer = len(tokenizer(answer, add_special_tokens=False)["input_ids"]) + 1  # end of turn
        if n_answer > MAX_SFT_LENGTH - 1:
            too_long += 1
            continue
        examples.append(ChatExample(messages, answer))
        ids.append(call.id)
        lengths.append(n_prompt + n_answer)
        answer_tokens.append(n_answer)
    dropped["answer too long to train on"] = too_long
    dropped = {why: n for why, n in dropped.items() if n}
    if not examples:
        raise CandidateUnfit(f"no call is usable for training ({dropped})")
    longest = max(answer_tokens)
    return SFTTask(
        prompt=prompt,
        data=ChatData(examples, "flywheel"),
        json_schema=schema,
        max_new_tokens=min(MAX_NEW_TOKENS, math.ceil(longest * 1.25) + 16),
        max_length=min(MAX_SFT_LENGTH, max(128, max(lengths) + 8)),
        call_ids=ids,
        dropped=dropped,
    )


def extraction_prompt(keys: Sequence[str]) -> str:
    """The instruction naming the fields, then the text: a ``str.format`` template."""
    names = [str(k).replace("{", "{{").replace("}", "}}") for k in keys]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"Extract the {listed} from this text as JSON.\n\n{{text}}"


def constrained_json(answer: dict[str, Any]) -> str:
    """The answer as constrained decoding writes it: schema order, ``", "`` and ``": "``
    (see :func:`slm_agents.finetune.recipes.receipt_response`), non-ASCII kept as it is."""
    return json.dumps(answer, ensure_ascii=False, separators=(", ", ": "))


JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
              (list, "array"), (dict, "object"), (type(None), "null"))  # fmt: skip


def json_schema(answers: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """An object schema of ``keys`` (all required, in this order, nothing else), each typed as
    the answers' values are; strings bounded at twice the longest seen (at least 16
    characters), because a small model under an unbounded string can loop until its token
    limit."""
    properties = {}
    for key in keys:
        values = [answer[key] for answer in answers if key in answer]
        types = sorted({_json_type(v) for v in values}) or ["string"]
        if types == ["integer", "number"]:
            types = ["number"]
        longest = max((len(v) for v in values if isinstance(v, str)), default=0)
        options = [
            {"type": t, "maxLength": max(16, 2 * longest)} if t == "string" else {"type": t}
            for t in types
        ]
        properties[str(key)] = options[0] if len(options) == 1 else {"anyOf": options}
    return {
        "type": "object",
        "properties": properties,
        "required": [str(k) for k in keys],
        "additionalProperties": False,
    }


def _json_type(value: Any) -> str:
    return next((name for kind, name in JSON_TYPES if isinstance(value, kind)), "string")


def _as_object(output: Any) -> dict[str, Any] | None:
    if isinstance(output, str) and output.strip().startswith("{"):
        try:
            output = json.loads(output)
        except json.JSONDecodeError:
            return None
    return output if isinstance(output, dict) else None


def _modal_keys(objects: Sequence[dict[str, Any] | None]) -> list[str]:
    key_sets = Counter(tuple(sorted(obj)) for obj in objects if obj)
    return list(key_sets.most_common(1)[0][0]) if key_sets else []


def _as_text(output: Any) -> str | None:
    if isinstance(output, str):
        return output
    if isinstance(output, dict | list):
        return json.dumps(output, ensure_ascii=False)
    return None


def _train_lora(
    candidate: Candidate,
    kind: str,
    calls: Sequence[Call],
    target: Path,
    relative: str,
    config: Any,
    track: bool,
    progress: bool,
    register_as: str | None,
    *,
    keys: Sequence[str],
) -> Trained:
    from slm_agents.finetune.sft import SFTSettings, train_sft

    tokenizer = base_tokenizer(candidate.base)
    if not tokenizer.chat_template:
        raise CandidateUnfit(
            f"{candidate.base} has no chat template here, and an llm agent prompts in chat "
            "form: its adapter could not be served as trained"
        )
    task = build_sft_task(kind, calls, tokenizer, keys)
    settings = {"max_length": task.max_length, **candidate.settings}
    result = train_sft(
        task.data,
        target,
        settings=SFTSettings(base=candidate.base, **settings),
        config=config,
        recipe="flywheel",
        extra={"prompt": task.prompt, "json_schema": task.json_schema, "kind": kind},
        progress=progress,
        track=track,
        register_as=register_as,
    )
    adapter = slug(target.parent.name)
    agent: dict[str, Any] = {
        "kind": "llm",
        "model": candidate.base,
        "adapter": adapter,
        "adapters": {adapter: relative},
        "prompt": task.prompt,
        "max_new_tokens": task.max_new_tokens,
    }
    if task.json_schema is not None:
        agent["json_schema"] = task.json_schema
    return Trained(
        candidate.name,
        target,
        agent,
        0.0,
        task.call_ids,
        task.dropped,
        result.model_version,
        result.report.stopped,
    )
