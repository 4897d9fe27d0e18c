"""The documentation's relative links and the configuration keys it names.

Pages: README.md, CHANGELOG.md and docs/*.md. Every relative link (markdown `[text](path)`, `![alt](path)`, HTML
`src=` / `href=`) must resolve to a file or folder inside the repository, and an anchor (`path.md#heading`,
`#heading`) to a heading of that page, slugged as GitHub does. Every configuration key that README.md or a docs
page names in backticks in dotted form, starting with a top-level section of the schema (`fid.weights_path`,
`datasets.<name>.split.train`, `methods.<name>.kind: selora`), must exist in workflow/schemas/config.schema.yaml;
`<name>`-style segments stand for map entries (the schema's additionalProperties / patternProperties). CHANGELOG.md
is checked for links only: it may name keys that no longer exist.
"""

import re
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text(encoding="utf-8"))
DOCS = sorted((REPO / "docs").glob("*.md"))
LINK_PAGES = [path for path in (REPO / "README.md", REPO / "CHANGELOG.md", *DOCS) if path.is_file()]
KEY_PAGES = [path for path in (REPO / "README.md", *DOCS) if path.is_file()]

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
MARKDOWN_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"<(?:img|a|source)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
HTML_ANCHOR = re.compile(r"<a\b[^>]*?\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...
PLACEHOLDER = re.compile(r"<[A-Za-z_]+>")
DOTTED_KEY = re.compile(r"([a-z][a-z0-9_]*(?:\.(?:<[A-Za-z_]+>|[A-Za-z0-9_]+))+)(?:\s*[:=].*)?", re.DOTALL)
# `fid.py`, `classifier.log`: file names whose stem happens to be a section name, not keys
FILE_SUFFIXES = {"py", "csv", "json", "png", "yaml", "yml", "smk", "html", "md", "tsv", "npz", "pt", "pkl", "txt",
                 "gz", "nii", "mha", "log", "safetensors", "sh", "rst", "zip"}


def without_code_blocks(text: str) -> str:
    """The page with fenced code blocks blanked out (links and headings inside them are not links or headings)."""
    return FENCE.sub(lambda match: "\n" * match.group(0).count("\n"), text)


def without_code(text: str) -> str:
    return INLINE_CODE.sub("", without_code_blocks(text))


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its rendered text (a link's text, code as written, HTML tags dropped)
    in lower case, punctuation removed, spaces to hyphens."""
    parts = re.split(r"(`+[^`]*`+)", heading)  # code spans keep `<name>` as text; elsewhere <...> is a tag
    text = "".join(part if part.startswith("`") else re.sub(r"<[^>]+>", "", part) for part in parts)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link's text stays
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a markdown page: its headings' slugs (repeats numbered as GitHub does) and HTML ids."""
    text = without_code_blocks(page.read_text(encoding="utf-8"))
    found, counts = set(), {}
    for heading in HEADING.findall(text):
        slug = github_slug(heading)
        found.add(f"{slug}-{counts[slug]}" if counts.get(slug) else slug)
        counts[slug] = counts.get(slug, 0) + 1
    return found | set(HTML_ANCHOR.findall(text))


def link_targets(text: str) -> list[str]:
    prose = without_code(text)
    return MARKDOWN_LINK.findall(prose) + HTML_LINK.findall(prose)


def broken_links(page: Path, repo: Path = REPO) -> list[str]:
    """Each relative link of `page` that does not resolve inside `repo`, with the reason."""
    problems = []
    for target in link_targets(page.read_text(encoding="utf-8")):
        if EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / unquote(path_part)).resolve() if path_part else page
        if not resolved.is_relative_to(repo):
            problems.append(f"{target}: outside the repository")
        elif not resolved.exists():
            problems.append(f"{target}: {resolved.relative_to(repo)} does not exist")
        elif anchor and resolved.suffix == ".md" and unquote(anchor).lower() not in anchors(resolved):
            problems.append(f"{target}: no heading #{anchor} in {resolved.relative_to(repo)}")
    return problems


def named_keys(text: str) -> list[str]:
    """Dotted configuration keys named in inline code outside code blocks, e.g. `fid.weights_path: /x` -> fid.weights_path."""
    keys = []
    for _, code in INLINE_CODE.findall(without_code_blocks(text)):
        match = DOTTED_KEY.fullmatch(code.strip())
        if not match:
            continue
        key = match.group(1)
        segments = key.split(".")
        if segments[0] in SCHEMA["properties"] and segments[-1] not in FILE_SUFFIXES:
            keys.append(key)
    return keys


def referenced(node: dict) -> dict:
    """The subschema a local `$ref` (`#/$defs/...`) points to."""
    target = SCHEMA
    for part in node["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    return target


def applicable(node: dict):
    """`node` and every subschema that applies to the same value: $ref targets, allOf / anyOf / oneOf, and the
    then / else branches of an if (either may apply, depending on the value)."""
    if not isinstance(node, dict):
        return
    yield node
    if "$ref" in node:
        yield from applicable(referenced(node))
    for keyword in ("allOf", "anyOf", "oneOf"):
        for subschema in node.get(keyword, []):
            yield from applicable(subschema)
    for keyword in ("then", "else"):
        yield from applicable(node.get(keyword))


def name_allowed(node: dict, name: str) -> bool:
    pattern = node.get("propertyNames", {}).get("pattern")
    return pattern is None or re.search(pattern, name) is not None


def children(node: dict, segments: list[str]):
    """(subschema, remaining segments) for each way the first segment(s) can name a key below `node`. A map entry's
    name may contain dots (`methods.selora_l1.00`), so it may take several segments."""
    first = segments[0]
    for schema in applicable(node):
        properties = schema.get("properties", {})
        patterns = schema.get("patternProperties", {})
        additional = schema.get("additionalProperties")
        if first in properties:
            yield properties[first], segments[1:]
        if PLACEHOLDER.fullmatch(first):
            yield from ((subschema, segments[1:]) for subschema in patterns.values())
            if isinstance(additional, dict):
                yield additional, segments[1:]
            continue
        for count in range(1, len(segments) + 1):
            name = ".".join(segments[:count])
            if name in properties:
                continue
            yield from ((subschema, segments[count:]) for pattern, subschema in patterns.items()
                        if re.search(pattern, name))
            if isinstance(additional, dict) and name_allowed(schema, name):
                yield additional, segments[count:]


def key_exists(key: str, node: dict = SCHEMA) -> bool:
    segments = key.split(".")
    return not segments or any(not rest or key_exists(".".join(rest), child) for child, rest in children(node, segments))


# --- the checkers themselves, on known cases, so that a vacuous check cannot pass --------------------------------


@pytest.mark.parametrize("key", [
    "fid.weights_path", "finetune.learning_rate", "datasets.<name>.split.train", "datasets.brats.root",
    "datasets.<name>.prompts.size_thresholds.small_below", "datasets.<name>.demo.spacing", "methods.<name>.kind",
    "methods.<name>.threshold", "methods.<name>.l1_penalty", "methods.<name>.privacy.proxy_steps",
    "methods.selora_l1.00.threshold", "classifier.budget.steps", "base_model.demo.latent_downsampling",
])
def test_known_keys_are_found(key):
    assert key_exists(key)


@pytest.mark.parametrize("key", [
    "fid.weights_pth", "datasets.<name>.split.validation", "methods.<name>.nope", "classifier.budget.minutes",
    "base_model.demo.unknown", "finetune.learning_rate.value",
])
def test_unknown_keys_are_caught(key):
    assert not key_exists(key)


def test_keys_are_read_from_inline_code_only():
    text = ("Set `fid.weights_path` and `finetune.mixed_precision: auto`; `fid.py` is a file, `config.yaml` no key.\n"
            "```yaml\nfid.ignored_in_a_block: 1\n```\n`generation.steps=10` too.")
    assert named_keys(text) == ["fid.weights_path", "finetune.mixed_precision", "generation.steps"]


def test_broken_links_and_anchors_are_caught(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/other.md").write_text("# Other page\n\n## Its section\n")
    page = tmp_path / "docs/page.md"
    page.write_text(
        "# Title\n\n[ok](other.md) [ok](other.md#its-section) [ok](#title) [web](https://example.org/x)\n"
        "[missing](gone.md) [bad anchor](other.md#nowhere) [outside](../../elsewhere.md) <img src=\"pic.png\">\n"
        "`[in code](not-checked.md)`\n```\n[in a block](not-checked-either.md)\n```\n"
    )
    problems = broken_links(page, repo=tmp_path)
    assert [problem.split(":")[0] for problem in problems] == [
        "gone.md", "other.md#nowhere", "../../elsewhere.md", "pic.png"]


def test_slugs_follow_github():
    assert github_slug("SD v1.5 on the CPU") == "sd-v15-on-the-cpu"
    assert github_slug("`methods.<name>` with `kind: gan`") == "methodsname-with-kind-gan"
    assert github_slug("StyleGAN3 baseline (GPU only)") == "stylegan3-baseline-gpu-only"


# --- the pages ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", LINK_PAGES, ids=lambda path: str(path.relative_to(REPO)))
def test_relative_links_resolve(page):
    problems = broken_links(page)
    assert not problems, f"{page.relative_to(REPO)} has broken links:\n" + "\n".join(problems)


@pytest.mark.parametrize("page", KEY_PAGES, ids=lambda path: str(path.relative_to(REPO)))
def test_named_config_keys_exist_in_the_schema(page):
    unknown = sorted({key for key in named_keys(page.read_text(encoding="utf-8")) if not key_exists(key)})
    assert not unknown, (f"{page.relative_to(REPO)} names configuration keys that workflow/schemas/config.schema.yaml "
                         f"does not have: {unknown}")


def test_the_docs_name_config_keys():
    """The key check is not vacuous: the docs name many keys."""
    assert sum(len(named_keys(page.read_text(encoding="utf-8"))) for page in KEY_PAGES) > 30
