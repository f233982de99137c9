"""Extraction: JSON valid for the schema by construction, for many schemas, on the tiny model."""

import json

import jsonschema
import pytest

from tasks.errors import InvalidRequest, UserError
from tasks.extract import decoding_schema, extract, spec_from_fields, spec_from_schema
from tasks.options import TaskOptions

SCHEMAS = {
    "scalars": {
        "type": "object",
        "properties": {
            "company": {"type": "string", "description": "the company's name"},
            "year": {"type": "integer", "minimum": 1900, "maximum": 2100},
            "revenue_millions": {"type": "number"},
            "audited": {"type": "boolean"},
        },
        "required": ["company", "year", "revenue_millions", "audited"],
    },
    "nullable_and_enum": {
        "type": "object",
        "properties": {
            "currency": {"enum": ["EUR", "USD", "GBP"]},
            "auditor": {"type": ["string", "null"]},
        },
        "required": ["currency", "auditor"],
    },
    "nested": {
        "type": "object",
        "properties": {
            "office": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "employees": {"type": "integer"}},
                "required": ["city", "employees"],
            }
        },
        "required": ["office"],
    },
    "arrays": {
        "type": "object",
        "properties": {
            "cities": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 3},
            "years": {"type": "array", "items": {"type": "integer", "minimum": 2000, "maximum": 2030}},
        },
        "required": ["cities", "years"],
    },
    "array_of_objects": {
        "type": "object",
        "properties": {
            "people": {
                "type": "array",
                "maxItems": 2,
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "role": {"type": ["string", "null"]}},
                    "required": ["name", "role"],
                },
            }
        },
        "required": ["people"],
    },
    "optional_fields": {
        "type": "object",
        "properties": {"title": {"type": "string"}, "pages": {"type": "integer", "minimum": 1}},
        "required": ["title"],
    },
}


@pytest.fixture(scope="module")
def report_documents(tmp_path_factory, tiny_workbench_module):
    from tests.pdfs import PdfFactory

    path = PdfFactory(tmp_path_factory.mktemp("extract")).report()
    return tiny_workbench_module.read(path)


@pytest.fixture(scope="module")
def tiny_workbench_module(tiny_engine):
    from tasks.workbench import Workbench

    return Workbench(tiny_engine)


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_output_is_valid_json_for_the_schema(name, report_documents, tiny_engine):
    spec = spec_from_schema(json.dumps(SCHEMAS[name]))
    result = list(extract(report_documents, spec, TaskOptions(max_new_tokens=1024), tiny_engine))[-1]
    assert result.finish_reason == "stop"
    jsonschema.validate(result.extraction.data, SCHEMAS[name])
    assert json.loads(result.text) == result.extraction.data


def test_named_fields_are_strings_or_null_and_found_in_the_document(report_documents, tiny_engine):
    spec = spec_from_fields("company, revenue, nonexistent field")
    result = list(extract(report_documents, spec, TaskOptions(max_new_tokens=600), tiny_engine))[-1]
    data = result.extraction.data
    assert set(data) == {"company", "revenue", "nonexistent field"}
    text = " ".join(report_documents[0].text.split()).casefold()
    for value in data.values():
        assert value is None or " ".join(value.split()).casefold() in text
    for name, guess in result.extraction.unverified.items():  # guesses are reported, never returned as values
        assert data[name] is None and guess


def test_decoding_schema_bounds_everything_unbounded():
    tight = decoding_schema(SCHEMAS["scalars"])
    props = tight["properties"]
    assert props["company"]["maxLength"] == 1000 and props["revenue_millions"]["maximum"] == 10**15
    assert props["year"]["minimum"] == 1900  # the user's bounds stay
    assert "maxLength" not in SCHEMAS["scalars"]["properties"]["company"]  # the user's schema is untouched


def test_too_few_tokens_for_the_json_is_a_clear_error(report_documents, tiny_engine):
    spec = spec_from_fields("company, revenue")
    with pytest.raises(UserError, match="did not finish the JSON within 3 new tokens"):
        list(extract(report_documents, spec, TaskOptions(max_new_tokens=3), tiny_engine))


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"type": "array", "items": {}}', "must describe an object"),
        ('{"type": "object", "properties": {"a": {"type": "strung"}}}', "not a valid JSON schema"),
    ],
)
def test_bad_schemas_are_explained(schema, message):
    with pytest.raises(InvalidRequest, match=message):
        spec_from_schema(schema)


def test_fields_are_checked():
    with pytest.raises(InvalidRequest, match="at least one field"):
        spec_from_fields(" , ")
    assert spec_from_fields("title, author ,title").schema["required"] == ["title", "author"]


def test_schema_minimums_above_the_default_bounds_still_compile(report_documents, tiny_engine):
    schema = {
        "type": "object",
        "properties": {
            "codes": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "minItems": 25}
        },
        "required": ["codes"],
    }
    result = list(extract(report_documents, spec_from_schema(schema), TaskOptions(max_new_tokens=400), tiny_engine))
    assert len(result[-1].extraction.data["codes"]) >= 25


def test_a_schema_that_cannot_become_a_grammar_is_explained(report_documents, tiny_engine):
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 10, "maximum": 1}}}
    with pytest.raises(InvalidRequest, match="cannot be turned into a grammar"):
        list(extract(report_documents, spec_from_schema(schema), TaskOptions(max_new_tokens=50), tiny_engine))


def test_fields_come_out_in_the_order_asked_for(report_documents, tiny_engine):
    result = list(extract(report_documents, spec_from_fields("title, amount, city"), TaskOptions(max_new_tokens=600),
                          tiny_engine))[-1]  # fmt: skip
    assert list(result.extraction.data) == ["title", "amount", "city"]


def test_a_runaway_field_keeps_the_finished_ones_and_is_marked():
    from tasks.documents import Document, Page
    from tests.fakes import FakeEngine

    engine = FakeEngine(reply='{"number":"RE-2024-0419", "date":"22.05.2024", "email":"1 2 3 4 5 6 7 8 9 10 11 12')
    document = Document("rechnung.txt", (Page(1, "Rechnung RE-2024-0419 vom 22.05.2024, Summe 2.356,80"),))
    spec = spec_from_fields("number, date, email, total")
    result = list(extract([document], spec, TaskOptions(max_new_tokens=6), engine))[-1]
    assert result.finish_reason == "length"
    extraction = result.extraction
    assert extraction.data == {"number": "RE-2024-0419", "date": "22.05.2024", "email": None, "total": None}
    assert extraction.unfinished == {"email": "1 2 3 4"}
    assert json.loads(result.text) == extraction.data


def test_strings_are_capped_so_every_field_gets_its_share_of_the_tokens():
    from tasks.extract import STRING_MIN_CHARS, string_cap

    schema = spec_from_fields("a, b, c, d").schema
    assert string_cap(schema, 96) == 48 and string_cap(schema, 4096) == 1000
    assert string_cap(schema, 8) == STRING_MIN_CHARS
    assert decoding_schema(schema, 48)["properties"]["a"]["maxLength"] == 48


def test_an_unfinished_number_or_key_is_not_a_finished_field():
    from tasks.extract import finished_fields

    assert finished_fields('{"a": 1, "b": 12') == ({"a": 1}, "b", "12")  # 12 may have been 1250000
    assert finished_fields('{"a": 1, "b": 10, "c"') == ({"a": 1, "b": 10}, "c", "")
    assert finished_fields('{"a": "x\\"y", "b": true') == ({"a": 'x"y', "b": True}, None, "")


def test_a_field_with_bounds_of_its_own_is_never_reported_capped():
    from tasks.extract import _capped_fields

    schema = {"type": "object", "properties": {"status": {"type": "string", "enum": ["approved by the board"]},
                                               "note": {"type": "string"}}}  # fmt: skip
    data = {"status": "approved by the board", "note": "x" * 32}
    assert _capped_fields(data, 20, schema) == ["note"]
