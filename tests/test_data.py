"""The shipped relational-facts data: the paper's 906-example set and malformed-file errors."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from lpi_core import RelationFileError, evaluation_set, load_relation, relation_examples
from lpi_core.data import EVALUATION_RELATIONS, RELATIONS_DIR, all_relations

PAPER_COUNTS = {
    "adjective antonym": 100,
    "word first letter": 241,
    "word last letter": 241,
    "object superclass": 76,
    "fruit inside color": 36,
    "work location": 38,
    "country language": 24,
    "country capital city": 24,
    "name religion": 31,
    "occupation age": 45,
    "occupation gender": 19,
    "name birthplace": 31,
}


def test_evaluation_set_is_the_papers_906_examples():
    data = evaluation_set()
    assert len(data) == 906
    assert Counter(data["relation"]) == PAPER_COUNTS
    capital = data.filter(lambda r: r["relation"] == "country capital city")
    assert capital[10]["prompt"] == "The capital of France is the city of" and capital[10]["object"] == "Paris"


def test_all_47_relations_ship_with_the_license():
    assert len(all_relations()) == 47 and set(EVALUATION_RELATIONS) <= set(all_relations())
    assert "MIT" in (RELATIONS_DIR / "LICENSE").read_text()
    assert len(relation_examples(["country_currency"])) == len(load_relation("factual/country_currency")["samples"])
    second = relation_examples(["factual/country_capital_city"], template=1)
    assert second[0]["prompt"] == "What is the capital of United States? It is the city of"


def write(tmp_path, content) -> str:
    path = tmp_path / "rel.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


GOOD = {
    "name": "r",
    "prompt_templates": ["{} is"],
    "prompt_templates_zs": ["{} is"],
    "samples": [{"subject": "a", "object": "b"}],
}


def test_malformed_relation_files_name_the_file_and_field(tmp_path):
    with pytest.raises(RelationFileError, match="rel.json: not valid JSON"):
        load_relation(write(tmp_path, "{not json"))
    with pytest.raises(RelationFileError, match="rel.json: missing field 'samples'"):
        load_relation(write(tmp_path, {k: v for k, v in GOOD.items() if k != "samples"}))
    with pytest.raises(RelationFileError, match="sample 0 lacks string field 'object'"):
        load_relation(write(tmp_path, {**GOOD, "samples": [{"subject": "a"}]}))
    with pytest.raises(RelationFileError, match="no relation named 'nope'"):
        load_relation("nope")
    with pytest.raises(RelationFileError, match="empty"):
        relation_examples([write(tmp_path, {**GOOD, "samples": []})])
    assert relation_examples([write(tmp_path, GOOD)])[0]["prompt"] == "a is"
