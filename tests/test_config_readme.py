"""config/README.md: generated from the schema's descriptions by tools/config_readme.py, so it cannot drift."""

import copy
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools/config_readme.py"
_spec = importlib.util.spec_from_file_location("config_readme", SCRIPT)
config_readme = sys.modules["config_readme"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(config_readme)

SCHEMA = config_readme.load_schema(REPO / "workflow/schemas/config.schema.yaml")
CONFIGS = [REPO / "config/config.yaml", REPO / "config/study.yaml", REPO / "config/paper.yaml"]

# The keywords of JSON Schema draft 2020-12 (core, applicator, validation, meta-data, format, content,
# unevaluated). Any other key in a schema node is ignored by validators: e.g. a flow mapping
# `{description: sigma, px}` parses as description "sigma" plus a key "px", silently cutting the description.
KEYWORDS = {
    "$schema", "$id", "$ref", "$defs", "$anchor", "$dynamicRef", "$dynamicAnchor", "$vocabulary", "$comment",
    "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas", "prefixItems", "items",
    "contains", "properties", "patternProperties", "additionalProperties", "propertyNames",
    "unevaluatedItems", "unevaluatedProperties",
    "type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
    "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxContains", "minContains",
    "maxProperties", "minProperties", "required", "dependentRequired",
    "title", "description", "default", "deprecated", "readOnly", "writeOnly", "examples",
    "format", "contentEncoding", "contentMediaType", "contentSchema",
}
SCHEMA_MAPS = ("properties", "$defs", "patternProperties", "dependentSchemas")  # name -> subschema
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
SCHEMA_VALUES = ("additionalProperties", "items", "contains", "not", "then", "else", "propertyNames",
                 "unevaluatedItems", "unevaluatedProperties")


def described(schema: dict, node: dict, via_ref: bool = False) -> bool:
    """A non-empty description of its own; with `via_ref` (a map's entries, a bare $ref) its $ref target's counts."""
    text = node.get("description")
    if text is None and via_ref and "$ref" in node:
        text = config_readme.ref_target(schema, node["$ref"]).get("description")
    return isinstance(text, str) and bool(text.strip())


def undescribed(schema: dict) -> list[str]:
    """Paths of schema nodes that document config keys but have no description: every property at every level,
    every $defs entry and every map's entry schema (`additionalProperties`). `if` branches only select a
    variant (e.g. kind: lora) and are not keys; their `then` branches are walked."""
    missing = []

    def walk(node, path: str) -> None:
        if not isinstance(node, dict):
            return
        for keyword in SCHEMA_MAPS:
            for name, child in node.get(keyword, {}).items():
                if keyword in ("properties", "$defs") and not described(schema, child):
                    missing.append(f"{path}/{keyword}/{name}")
                walk(child, f"{path}/{keyword}/{name}")
        for keyword in SCHEMA_LISTS:
            for index, child in enumerate(node.get(keyword, [])):
                walk(child, f"{path}/{keyword}/{index}")
        for keyword in SCHEMA_VALUES:
            child = node.get(keyword)
            if keyword == "additionalProperties" and isinstance(child, dict) and not described(schema, child, True):
                missing.append(f"{path}/{keyword}")
            walk(child, f"{path}/{keyword}")

    walk(schema, "#")
    return missing


def unknown_keywords(node, path: str = "#") -> list[str]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in KEYWORDS:
                found.append(f"{path}/{key}")
            if key in SCHEMA_MAPS:
                for name, child in value.items():
                    found += unknown_keywords(child, f"{path}/{key}/{name}")
            elif key in SCHEMA_LISTS:
                for index, child in enumerate(value):
                    found += unknown_keywords(child, f"{path}/{key}/{index}")
            elif key in SCHEMA_VALUES or key == "if":
                found += unknown_keywords(value, f"{path}/{key}")
    return found


def section_headings(text: str) -> list[str]:
    return re.findall(r"^## `([^`]+)`$", text, flags=re.MULTILINE)


def test_committed_readme_is_what_the_schema_generates():
    committed = config_readme.README_PATH.read_text(encoding="utf-8")
    assert committed == config_readme.render(SCHEMA), (
        "config/README.md is out of date with workflow/schemas/config.schema.yaml: run `python tools/config_readme.py`"
    )


def test_a_changed_description_changes_the_readme():
    schema = copy.deepcopy(SCHEMA)
    schema["properties"]["fid"]["properties"]["seed"]["description"] = "a description not yet in the README"
    text = config_readme.render(schema)
    assert "| `fid.seed` | integer | no | default `0` | a description not yet in the README |" in text
    assert text != config_readme.README_PATH.read_text(encoding="utf-8")


def test_check_mode_fails_with_the_command_while_stale(tmp_path, monkeypatch, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("stale\n")
    monkeypatch.setattr(config_readme, "README_PATH", readme)
    assert config_readme.main(["--check"]) == 1
    assert "python tools/config_readme.py" in capsys.readouterr().err
    assert config_readme.main([]) == 0
    assert readme.read_text() == config_readme.render(SCHEMA)
    assert config_readme.main(["--check"]) == 0


def test_every_schema_property_has_a_description():
    assert undescribed(SCHEMA) == []


@pytest.mark.parametrize("path", [
    ["properties", "classifier"],  # a section
    ["properties", "fid", "properties", "seed"],  # a key
    ["properties", "classifier", "properties", "blur", "properties", "sigma"],  # a nested key
    ["$defs", "dataset", "properties", "split", "properties", "train"],  # a $ref key inside $defs
    ["$defs", "selora_method", "properties", "init_rank"],  # a key of a method kind
    ["properties", "methods", "additionalProperties", "properties", "kind"],  # the key of a map's entries
    ["$defs", "lora_method"],  # a $defs entry
])
def test_a_deleted_description_is_reported(path):
    schema = copy.deepcopy(SCHEMA)
    node = schema
    for key in path:
        node = node[key]
    del node["description"]
    assert set(undescribed(schema)) - set(undescribed(SCHEMA)) == {"#/" + "/".join(path)}


def test_schema_has_only_json_schema_keywords():
    """A stray key is usually a description cut short by a comma in a YAML flow mapping."""
    assert unknown_keywords(SCHEMA) == []


def test_unknown_keyword_is_reported():
    schema = yaml.safe_load("properties: {a: {type: number, description: sigma, px at the working size}}")
    assert unknown_keywords(schema) == ["#/properties/a/px at the working size"]


@pytest.mark.parametrize("config_path", CONFIGS, ids=lambda path: path.name)
def test_every_config_section_has_a_readme_section(config_path):
    headings = section_headings(config_readme.README_PATH.read_text(encoding="utf-8"))
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    assert [key for key in config if key not in headings] == []


def test_sections_follow_the_schema_order():
    assert section_headings(config_readme.render(SCHEMA)) == list(SCHEMA["properties"])


def test_refs_are_resolved_and_kinds_documented():
    text = config_readme.render(SCHEMA)
    # $defs/even_count's limits reach the split counts; each method kind gets its own table
    assert "| `datasets.<name>.split.train` | integer | yes | ≥ 2, multiple of 2 |" in text
    for kind in SCHEMA["properties"]["methods"]["additionalProperties"]["properties"]["kind"]["enum"]:
        assert f"### `methods.<name>` with `kind: {kind}`" in text
    assert "| `methods.<name>.expand_every` | integer | yes | ≥ 1 |" in text
    assert "$ref" not in text
