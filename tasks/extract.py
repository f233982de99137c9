"""The `extract` task: structured fields as JSON that is valid for the schema by construction.

The user names fields (each a string, or null when the document does not state it) or gives a
JSON schema for an object. Generation is constrained by a grammar built from a *tightened* copy
of that schema (bounded string lengths, number ranges and array sizes), so the JSON always
completes within the token budget; the result is then validated against the user's schema.
With named fields, a value that appears nowhere in the documents is replaced by null and
reported as unverified: a base model may otherwise fill a missing field with a guess.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tasks.documents import Document
from tasks.errors import InvalidRequest, UserError
from tasks.events import Event, Extraction
from tasks.interfaces import TextEngine
from tasks.options import TaskOptions, comma_list
from tasks.pipeline import make_result, plan_context, stream_answer
from tasks.planning import output_language
from tasks.prompts import engine_template
from tasks.sources import related_passages, source_list

MAX_FIELDS = 40
STRING_MAX_CHARS = 1000
STRING_MIN_CHARS = 32  # the least a value may take, however many fields share the answer's tokens
CHARS_PER_TOKEN = 2  # JSON string text, conservatively: words take 3-5 characters a token, digits often one
UNFINISHED_SHOWN_CHARS = 80
ARRAY_MAX_ITEMS = 20
NUMBER_BOUND = 10**15
MAX_SCHEMA_DEPTH = 32  # levels of brackets: 16 nested objects, each a node and its properties


@dataclass(frozen=True)
class ExtractionSpec:
    schema: dict[str, Any]  # the user's schema: the result is validated against it
    from_fields: bool  # fields named by the user: values must be found in the documents

    @property
    def field_list(self) -> str:
        properties = self.schema.get("properties", {})
        return ", ".join(f"{name} ({p['description']})" if p.get("description") else name
                         for name, p in properties.items())  # fmt: skip


def spec_from_fields(fields: str | Sequence[str]) -> ExtractionSpec:
    names = comma_list(fields)
    if not names:
        raise InvalidRequest("name at least one field to extract (e.g. title,author,date)")
    if len(names) > MAX_FIELDS:
        raise InvalidRequest(f"name at most {MAX_FIELDS} fields")
    properties = {name: {"type": ["string", "null"]} for name in names}
    schema = {"type": "object", "properties": properties, "required": names, "additionalProperties": False}
    return ExtractionSpec(schema, from_fields=True)


def spec_from_schema(schema: str | dict) -> ExtractionSpec:
    """A JSON schema (as text or a dict) describing an object with properties, nested at most
    MAX_SCHEMA_DEPTH deep: json.loads, jsonschema, `_tighten` and the grammar compiler all
    recurse, and a schema nested thousands deep would exhaust Python's stack."""
    depth = _text_depth(schema) if isinstance(schema, str) else _value_depth(schema)
    if depth > MAX_SCHEMA_DEPTH:
        raise InvalidRequest(f"the schema is nested too deeply: more than {MAX_SCHEMA_DEPTH} levels of brackets")
    try:
        return _checked_spec(schema)
    except RecursionError as exc:  # the last resort: the depth check above should make this impossible
        raise InvalidRequest("the schema is nested too deeply") from exc


def _checked_spec(schema: str | dict) -> ExtractionSpec:
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"the schema is not valid JSON: {exc}") from exc
    if not isinstance(schema, dict) or schema.get("type") != "object" or not schema.get("properties"):
        raise InvalidRequest(
            'the schema must describe an object with properties: {"type": "object", "properties": ...}'
        )
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise InvalidRequest(f"the schema is not a valid JSON schema: {exc.message}") from exc
    return ExtractionSpec(schema, from_fields=False)


# A JSON string (its escapes included; an unclosed one runs to the end) or one bracket.
_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]+|\\.)*"?|[\[\]{}]', re.DOTALL)


def _text_depth(text: str) -> int:
    """How deep the brackets of JSON text nest, brackets inside strings not counted. A scan, not
    a parse: it cannot recurse, and invalid JSON is left for json.loads to describe."""
    depth = deepest = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in ("]", "}"):
            depth -= 1
    return deepest


def _value_depth(value: Any) -> int:
    """How deep dicts and lists nest in `value`, walked with a stack rather than by recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= MAX_SCHEMA_DEPTH:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def decoding_schema(schema: dict, string_chars: int = STRING_MAX_CHARS) -> dict:
    """A copy of `schema` with bounds added where it has none, so that the grammar it compiles to
    always ends: strings of at most `string_chars` characters, numbers within ±1e15, arrays of 20
    items (or more where the schema asks for more)."""
    tight = copy.deepcopy(schema)
    _tighten(tight, string_chars)
    return tight


def string_cap(schema: dict, max_new_tokens: int) -> int:
    """The length bound for unbounded strings: the answer's tokens shared by the object's fields,
    so that one runaway value (an endless number, a repeated code) cannot take the whole answer and
    leave the fields after it unwritten."""
    fields = max(1, len(schema.get("properties", {})))
    return max(STRING_MIN_CHARS, min(STRING_MAX_CHARS, max_new_tokens * CHARS_PER_TOKEN // fields))


def _tighten(node: Any, string_chars: int) -> None:
    if isinstance(node, list):
        for item in node:
            _tighten(item, string_chars)
        return
    if not isinstance(node, dict):
        return
    types = node.get("type", [])
    types = [types] if isinstance(types, str) else types
    if "string" in types and not _has_own_bound(node):
        node["maxLength"] = max(string_chars, node.get("minLength", 0))
    if {"number", "integer"} & set(types):
        node.setdefault("minimum", min(-NUMBER_BOUND, node.get("maximum", 0)))
        node.setdefault("maximum", max(NUMBER_BOUND, node["minimum"]))
    if "array" in types:
        node.setdefault("maxItems", max(ARRAY_MAX_ITEMS, node.get("minItems", 0)))
    for key in ("properties", "$defs", "definitions"):
        for child in node.get(key, {}).values():
            _tighten(child, string_chars)
    for key in ("items", "anyOf", "oneOf", "allOf", "additionalProperties"):
        if key in node:
            _tighten(node[key], string_chars)


def extract(
    documents: Sequence[Document], spec: ExtractionSpec, options: TaskOptions, engine: TextEngine
) -> Iterator[Event]:
    """Stream the JSON as it is written; the last event is the TaskResult with the parsed data."""
    options.validate()
    options = options.started()
    started = time.perf_counter()
    language = output_language(documents, options)
    template = engine_template("extract", language, engine)
    instruction = template.fill("instruction", fields=spec.field_list)
    query = spec.field_list.replace(",", " ")
    context = plan_context("extract", documents, instruction, query, options, engine)
    cap = string_cap(spec.schema, options.max_new_tokens)
    answer = yield from stream_answer(engine, context, options, (), json_schema=decoding_schema(spec.schema, cap))
    extraction = Extraction(spec.schema, None)
    if answer.last.finish_reason == "length":
        extraction = _unfinished(answer.text, spec, documents, options.max_new_tokens, cap)
    elif answer.last.finish_reason == "stop":
        data = _validated(answer.text, spec.schema)
        capped = _capped_fields(data, cap, spec.schema)
        unverified = _ground(data, documents) if spec.from_fields else {}  # sets what it did not find to null
        extraction = Extraction(spec.schema, data, capped, unverified)
    passages = context.chunks if context.strategy == "retrieval" else related_passages(documents, query, engine)
    data = extraction.data
    text = json.dumps(data, ensure_ascii=False, indent=2) if data is not None else answer.text
    yield make_result("extract", text, context, documents, engine, answer.last, started, language,
                      sources=source_list(passages, documents), extraction=extraction)  # fmt: skip


def _unfinished(
    text: str, spec: ExtractionSpec, documents: Sequence[Document], max_new_tokens: int, cap: int
) -> Extraction:
    """The fields the model finished before the token limit, the one it was writing marked as
    unfinished (null, with its start shown), the ones it never reached null. Named fields only
    keep values found in the documents, as a finished extraction does. Raises UserError when not
    one field was finished: there is nothing to keep."""
    finished, writing, partial = finished_fields(text)
    if not finished:
        raise UserError(
            f"the model did not finish the JSON within {max_new_tokens:,} new tokens; "
            "allow more new tokens or ask for fewer fields"
        )
    data = {name: finished.get(name) for name in spec.schema.get("properties", {})} | finished
    capped = _capped_fields(data, cap, spec.schema)
    unverified = _ground(data, documents) if spec.from_fields else {}
    unfinished = {writing: partial[:UNFINISHED_SHOWN_CHARS]} if writing is not None else {}
    return Extraction(spec.schema, data, capped, unverified, unfinished)


def finished_fields(text: str) -> tuple[dict[str, Any], str | None, str]:
    """Read the top-level fields of an unfinished JSON object: (the finished fields, the name of
    the field being written when it stopped or None, the start of that field's value)."""
    decoder = json.JSONDecoder(strict=False)
    finished: dict[str, Any] = {}
    position = text.find("{") + 1
    while 0 < position < len(text):
        try:
            name, position = decoder.raw_decode(text, _skip_space(text, position))
        except json.JSONDecodeError:
            return finished, None, ""
        colon = text.find(":", position)
        if colon < 0:  # stopped before the value began
            return finished, name, ""
        value_start = _skip_space(text, colon + 1)
        try:
            value, position = decoder.raw_decode(text, value_start)
        except (json.JSONDecodeError, RecursionError):
            return finished, name, text[value_start:].removeprefix('"')
        if position == len(text) and isinstance(value, (int, float)) and not isinstance(value, bool):
            return finished, name, text[value_start:]  # a number that reaches the end may go on
        finished[name] = value
        position = _skip_space(text, position)
        if text[position : position + 1] != ",":
            break
        position += 1
    return finished, None, ""


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _validated(text: str, schema: dict) -> Any:
    from jsonschema import ValidationError, validate

    try:
        # strict=False: xgrammar's length-bounded strings admit raw control characters, which
        # strict JSON forbids; the result is re-serialized (escaped) before anyone sees it.
        data = json.loads(text, strict=False)
        validate(data, schema)
    except (json.JSONDecodeError, ValidationError) as exc:  # the grammar should make this impossible
        raise UserError(f"the model's JSON did not match the schema: {exc}") from exc
    except RecursionError as exc:  # a schema that allows any value (`{}`) lets the model nest without end
        raise UserError("the model's JSON is nested too deeply to read") from exc
    return data


def _capped_fields(data: Any, cap: int, schema: dict) -> list[str]:
    """Top-level fields whose string value reached the length bound (the value may go on); a field
    with bounds of its own (an enum, a pattern, a maxLength) was never given it."""
    if not isinstance(data, dict):
        return []
    properties = schema.get("properties", {})
    own_bound = {name for name, node in properties.items() if isinstance(node, dict) and _has_own_bound(node)}
    return [name for name, value in data.items()
            if isinstance(value, str) and len(value) >= cap and name not in own_bound]  # fmt: skip


def _has_own_bound(node: dict) -> bool:
    return any(key in node for key in ("maxLength", "enum", "const", "pattern", "format"))


def _ground(data: dict, documents: Sequence[Document]) -> dict[str, str]:
    """Replace string values found in no document by null; return what was replaced."""
    haystack = " ".join(" ".join(d.text.split()) for d in documents).casefold()
    unverified = {}
    for name, value in data.items():
        if isinstance(value, str) and not value.strip():
            data[name] = None
        elif isinstance(value, str) and " ".join(value.split()).casefold() not in haystack:
            unverified[name] = value
            data[name] = None
    return unverified
