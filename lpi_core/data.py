"""The relational-facts data (LRE relations, MIT, Hernandez et al. 2023) shipped in `data/lre_relations`.

`evaluation_set()` is the paper's 12-relation, 906-example set: prompt = the relation's first
zero-shot template with the subject filled in, answer = the object.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset

RELATIONS_DIR = Path(__file__).parent / "data" / "lre_relations"

EVALUATION_RELATIONS: tuple[str, ...] = (
    "linguistic/adj_antonym",
    "linguistic/word_first_letter",
    "linguistic/word_last_letter",
    "commonsense/object_superclass",
    "commonsense/fruit_inside_color",
    "commonsense/work_location",
    "factual/country_language",
    "factual/country_capital_city",
    "bias/name_religion",
    "bias/occupation_age",
    "bias/occupation_gender",
    "bias/name_birthplace",
)

REQUIRED_FIELDS = ("name", "prompt_templates", "prompt_templates_zs", "samples")


class RelationFileError(ValueError):
    """A relation file that is not valid JSON or lacks a required field."""


def all_relations(root: Path = RELATIONS_DIR) -> list[str]:
    """Every relation shipped, as `category/name`, sorted."""
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.glob("*/*.json"))


def relation_path(name: str | Path, root: Path = RELATIONS_DIR) -> Path:
    """A relation by `category/name`, bare `name`, or a path to a JSON file."""
    path = Path(name)
    if path.suffix == ".json" and path.exists():
        return path
    candidates = [root / f"{name}.json"] + sorted(root.glob(f"*/{name}.json"))
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise RelationFileError(f"no relation named {str(name)!r}; known relations: {', '.join(all_relations(root))}")


def load_relation(name: str | Path, root: Path = RELATIONS_DIR) -> dict:
    """One relation file, checked: every required field, every sample with `subject` and `object`."""
    path = relation_path(name, root)
    try:
        relation = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RelationFileError(f"{path}: not valid JSON ({err}); fix or replace the file") from err
    if not isinstance(relation, dict):
        raise RelationFileError(f"{path}: expected a JSON object with fields {', '.join(REQUIRED_FIELDS)}")
    for field in REQUIRED_FIELDS:
        if field not in relation:
            raise RelationFileError(
                f"{path}: missing field {field!r}; a relation file needs {', '.join(REQUIRED_FIELDS)}"
            )
    if not relation["prompt_templates_zs"] or not all("{}" in t for t in relation["prompt_templates_zs"]):
        raise RelationFileError(f"{path}: field 'prompt_templates_zs' needs templates with a '{{}}' slot")
    for i, sample in enumerate(relation["samples"]):
        for field in ("subject", "object"):
            if not isinstance(sample, dict) or not isinstance(sample.get(field), str):
                raise RelationFileError(f"{path}: sample {i} lacks string field {field!r}")
    return relation


def relation_examples(
    names: Sequence[str | Path] = EVALUATION_RELATIONS, template: int = 0, root: Path = RELATIONS_DIR
) -> Dataset:
    """Examples of the named relations: columns relation, subject, object, prompt."""
    rows = []
    for name in names:
        relation = load_relation(name, root)
        templates = relation["prompt_templates_zs"]
        if not 0 <= template < len(templates):
            raise RelationFileError(f"{relation['name']}: no zero-shot template {template} (it has {len(templates)})")
        for sample in relation["samples"]:
            rows.append(
                {
                    "relation": relation["name"],
                    "subject": sample["subject"],
                    "object": sample["object"],
                    "prompt": templates[template].format(sample["subject"]),
                }
            )
    if not rows:
        raise RelationFileError(f"relations {list(names)} hold no samples: the data set is empty")
    return Dataset.from_list(rows)


def evaluation_set(template: int = 0) -> Dataset:
    """The paper's 906 examples from its 12 relations."""
    return relation_examples(EVALUATION_RELATIONS, template)
