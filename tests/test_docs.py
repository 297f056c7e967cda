"""The documentation as files: every relative link of README.md and docs/*.md resolves (the
file, and for an anchor into a markdown file a heading with that GitHub slug), README.md stays
a front page of at most 200 lines, and its demo results block has its markers once each.
Reads files only: no network, nothing written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lib.core.paths import REPO_ROOT

README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
README_MAX_LINES = 200
START, END = "<!-- demo-results:start -->", "<!-- demo-results:end -->"

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+).*?\1")
# [text](target) or [text](target "title"); images ![alt](target) too
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = ("http://", "https://", "mailto:")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def links(text: str) -> list[str]:
    """Every link target outside code (fenced blocks and inline code spans)."""
    targets = []
    for line in prose_lines(text):
        targets += LINK.findall(INLINE_CODE.sub("", line))
    return targets


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup and punctuation dropped, lower case, spaces ->
    hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The heading anchors of a markdown file; a repeated slug gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for line in prose_lines(path.read_text()):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def link_problem(source: Path, target: str) -> str | None:
    """What is wrong with a relative link ``target`` of ``source`` (None: it resolves)."""
    path_part, _, anchor = target.partition("#")
    destination = (source.parent / path_part).resolve() if path_part else source
    where = destination.relative_to(REPO_ROOT) if destination.is_relative_to(REPO_ROOT) \
        else destination
    if not destination.exists():
        return f"{target}: {where} does not exist"
    if anchor and destination.suffix == ".md" and anchor not in anchors(destination):
        return f"{target}: {where} has no heading with the anchor #{anchor}"
    return None


def test_slug_follows_github():
    assert slug("What `make demo` does") == "what-make-demo-does"
    assert slug("Slurm and other batch queues (dask-jobqueue)") == \
        "slurm-and-other-batch-queues-dask-jobqueue"
    assert slug("The ground truth: truth.csv") == "the-ground-truth-truthcsv"
    assert slug("Ensemble, submission and prediction (05, 04)") == \
        "ensemble-submission-and-prediction-05-04"


def test_links_skip_code():
    text = "see [a](a.md) and `[b](b.md)`\n```\n[c](c.md)\n```\n[d](d.md#x \"title\")\n"
    assert links(text) == ["a.md", "d.md#x"]


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_relative_links_resolve(path: Path):
    problems = [problem for target in links(path.read_text())
                if not target.startswith(EXTERNAL)
                and (problem := link_problem(path, target)) is not None]
    assert not problems, f"{path.relative_to(REPO_ROOT)}: broken links:\n" + "\n".join(problems)


def test_readme_is_a_front_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines; at most {README_MAX_LINES} (move detail to docs/)")


def test_readme_demo_results_block():
    text = README.read_text()
    assert text.count(START) == 1, f"README.md must hold {START} exactly once"
    assert text.count(END) == 1, f"README.md must hold {END} exactly once"
    assert text.index(START) < text.index(END), "the demo results block ends before it starts"


def test_every_docs_page_is_linked_from_readme():
    linked = {(README.parent / target.partition("#")[0]).resolve()
              for target in links(README.read_text()) if not target.startswith(EXTERNAL)}
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert not missing, f"docs pages not linked from README.md: {missing}"
