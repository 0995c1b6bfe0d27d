"""The repository stands on its own: every link of the README and docs/ and every `docs/...#anchor`
reference in code, tests and examples points to a file and section that exist, and nothing
points at notes outside the repository."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKDOWN = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SOURCES = ("tidal", "tests", "bench", "examples", "docs", ".ci")
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".sh", ""}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
DOCS_REF = re.compile(r"(?<![\w/.])docs/[\w./-]+?\.md(?:#[\w-]+)?")
FENCE = re.compile(r"^\s*(```|~~~)")
# Pieces joined so that this file does not match itself.
OUTSIDE = [
    re.compile(re.escape(p))
    for p in (
        "../" + "shared",
        "research " + "notes",
        "research/" + "knative.md",
        "research/" + "predictive.md",
        "DESIGN" + ".md",
    )
] + [re.compile("\u00a7" + r"\s*\d")]


def _prose_lines(path: Path) -> list[tuple[int, str]]:
    """Lines of a Markdown file outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, line in _prose_lines(path):
        match = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def _problem(target: Path, anchor: str) -> str | None:
    if not target.exists():
        return f"{target.relative_to(REPO) if target.is_relative_to(REPO) else target} is missing"
    if anchor and target.suffix == ".md" and anchor not in anchors(target):
        return f"no section #{anchor} in {target.relative_to(REPO)}"
    return None


def test_slugs_follow_github():
    assert slug("Bounds and scale to zero") == "bounds-and-scale-to-zero"
    assert slug("Revisions, traffic and rollout") == "revisions-traffic-and-rollout"
    assert slug("Pools, `ResourcePolicy` and GPUs") == "pools-resourcepolicy-and-gpus"
    assert slug("The `Scale()` algorithm") == "the-scale-algorithm"


def test_links_of_the_readme_and_docs_point_to_something():
    problems = []
    for md in MARKDOWN:
        for number, line in _prose_lines(md):
            for target in LINK.findall(line):
                if re.match(r"^[a-z]+:", target):
                    continue  # http(s), mailto: not checked offline
                file, _, anchor = target.partition("#")
                path = md if not file else (md.parent / file).resolve()
                problem = _problem(path, anchor)
                if problem:
                    problems.append(f"{md.relative_to(REPO)}:{number}: ({target}): {problem}")
    assert not problems, "broken links:\n" + "\n".join(problems)


def _source_files() -> list[Path]:
    files = [REPO / "README.md", REPO / "pyproject.toml", REPO / "Containerfile"]
    for top in SOURCES:
        root = REPO / top
        if root.exists():
            files += [p for p in root.rglob("*") if p.is_file() and p.suffix in SUFFIXES]
    return [f for f in files if f.exists() and "__pycache__" not in f.parts]


def test_docs_references_in_code_point_to_sections_that_exist():
    problems = []
    for path in _source_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for ref in DOCS_REF.findall(line):
                file, _, anchor = ref.partition("#")
                problem = _problem(REPO / file, anchor)
                if problem:
                    problems.append(f"{path.relative_to(REPO)}:{number}: {ref}: {problem}")
    assert not problems, "references to missing docs:\n" + "\n".join(problems)


def test_nothing_points_outside_the_repository():
    me = Path(__file__).resolve()
    problems = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()[:100]}"
        for path in _source_files()
        if path.resolve() != me
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if any(pattern.search(line) for pattern in OUTSIDE)
    ]
    assert not problems, "references to notes outside the repository:\n" + "\n".join(problems)
