"""Schema-constrained decoding: 20 varied prompts and schemas, 20 valid, conforming objects."""

from __future__ import annotations

import jsonschema
from pydantic import BaseModel, Field

from slm_agents.models import Request


def obj(properties: dict, required: list[str] | None = None) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": required if required is not None else list(properties),
        "additionalProperties": False,
    }


S = {"type": "string", "maxLength": 40}
INT = {"type": "integer", "minimum": 0, "maximum": 100000}
NUM = {"type": "number"}
BOOL = {"type": "boolean"}

CASES = [
    ("Extract the person: Alice is 31 years old.", obj({"name": S, "age": INT})),
    ("Is the sky green? Answer as JSON.", obj({"answer": BOOL})),
    ("Route this ticket: my card was stolen.", obj({"department": {"enum": ["cards", "loans"]}})),
    ("Total of the receipt: coffee 3.50, cake 4.25.", obj({"total": NUM})),
    ("List three colours.", obj({"colours": {"type": "array", "items": S, "maxItems": 3}})),
    ("Give a city and its country.", obj({"city": S, "country": S})),
    (
        "Rate the sentiment of 'I love it' from 1 to 5.",
        obj({"score": {"type": "integer", "minimum": 1, "maximum": 5}}),
    ),
    (
        "Summarise: the meeting moved to Friday.",
        obj({"summary": {"type": "string", "maxLength": 60}}),
    ),
    (
        "Extract the date: paid on 2024-03-01.",
        obj({"date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}}),
    ),
    ("Describe a book.", obj({"title": S, "author": S, "year": INT})),
    ("Is 7 a prime number?", obj({"prime": BOOL, "reason": S})),
    (
        "Classify priority of: server is down!",
        obj({"priority": {"enum": ["low", "medium", "high"]}}),
    ),
    ("Give the coordinates of a point.", obj({"x": NUM, "y": NUM})),
    ("Make a to-do item.", obj({"task": S, "done": BOOL})),
    (
        "Nested: a user with an address.",
        obj({"user": obj({"name": S, "address": obj({"city": S, "zip": S})})}),
    ),
    (
        "Give two tags for a post about Python.",
        obj(
            {
                "tags": {
                    "type": "array",
                    "items": {"enum": ["python", "code", "news", "food"]},
                    "minItems": 2,
                    "maxItems": 2,
                }
            }
        ),
    ),
    ("Optional fields: a product.", obj({"name": S, "price": NUM, "note": S}, required=["name"])),
    (
        "Answer null or a string: the middle name of Bob.",
        obj({"middle_name": {"anyOf": [S, {"type": "null"}]}}),
    ),
    ("Count the words in 'a b c'.", obj({"count": INT})),
    ("An invoice line.", obj({"item": S, "quantity": INT, "unit_price": NUM, "taxable": BOOL})),
]


def test_twenty_varied_schemas_give_twenty_valid_objects(slm):
    gens = slm.generate(
        [Request(prompt, json_schema=schema) for prompt, schema in CASES], max_new_tokens=128
    )
    assert len(gens) == 20
    for (prompt, schema), gen in zip(CASES, gens, strict=True):
        assert gen.ok, f"{prompt}: {gen.error} / {gen.text!r}"
        jsonschema.validate(gen.parsed, schema)


class Ticket(BaseModel):
    department: str = Field(max_length=20)
    urgent: bool


def test_pydantic_model_as_schema_gives_an_instance(slm):
    [gen] = slm.generate(["My card was stolen, help now!"], json_schema=Ticket, max_new_tokens=48)
    assert gen.ok, gen.error
    assert isinstance(gen.parsed, Ticket)
