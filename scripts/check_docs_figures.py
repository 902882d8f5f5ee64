"""Did the README's move into docs/ lose anything? And do the pages' links lead somewhere?

The README was split into a short front page and docs/*.md (issue 18). This compares the README
as it was before the split (git ref ``faf2728``) with README.md + docs/*.md now:

- every number with a decimal point (82.6, 0.0018, 1.3-1.4x, ...) and every whole number standing
  alone (1041 requests) occurs at least as often now;
- every table row and every line of a code block occurs as a line somewhere;
- every inline code span occurs somewhere;
- every image and link still points, from some page, at the same file or URL;

and checks that every relative link in those pages leads to an existing file, and to an existing
heading when it names one. Usage:

    python scripts/check_docs_figures.py [--ref faf2728]

Exit status 1 and a list when something is missing. An intentional correction of the old text
goes into CORRECTIONS, so the check compares against the corrected line and says so.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OLD_REF = "faf2728"

# Old text -> what replaced it, for statements the split found false (see the commit message).
CORRECTIONS = {
    # 2.0 is the restorer's release version since swinir_compact_v2: building the official
    # checkpoint as 2.0 would overwrite the release's archive.
    "--models swinir_restorer --version 2.0 --weights 006_colorCAR_DFWB_s126w7_SwinIR-M_jpeg10.pth":
        "--models swinir_restorer --version 3.0 --weights 006_colorCAR_DFWB_s126w7_SwinIR-M_jpeg10.pth",
}

DECIMAL = re.compile(r"(?<![\d.])\d+(?:\.\d+)+")
# Whole numbers standing alone (1041 requests, 54,293 parameters), not parts of 224x224 or v1.
WHOLE = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?![\w.]?\d)")
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`]+)`")  # a span may wrap onto the next line
FENCE = re.compile(r"^\s*(```|~~~)")
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def pages(root: Path = ROOT) -> list[Path]:
    """README.md and every docs/*.md: where the README's content lives now."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def old_readme(ref: str = OLD_REF, root: Path = ROOT) -> str | None:
    """The README at ``ref``, or None where git or that commit is not there (an exported tree)."""
    try:
        out = subprocess.run(["git", "show", f"{ref}:README.md"], cwd=root, capture_output=True,
                             text=True, check=False)
    except OSError:
        return None
    return out.stdout if out.returncode == 0 else None


def normalise(line: str) -> str:
    return " ".join(line.split())


def split_code(text: str) -> tuple[list[str], list[str]]:
    """(prose lines, code-block lines) of a Markdown text."""
    prose, code, inside = [], [], False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
            continue
        (code if inside else prose).append(line)
    return prose, code


def table_rows(text: str) -> list[str]:
    prose, _ = split_code(text)
    rows = [normalise(line) for line in prose if line.lstrip().startswith("|")]
    return [row for row in rows if not re.fullmatch(r"\|[\s:|-]*\|", row)]


def code_lines(text: str) -> list[str]:
    return [normalise(line) for line in split_code(text)[1] if line.strip()]


def code_spans(text: str) -> set[str]:
    prose, _ = split_code(text)
    return {normalise(span) for span in CODE_SPAN.findall("\n".join(prose))}


def links(text: str) -> list[tuple[bool, str]]:
    """(is an image, target) of every Markdown link outside code blocks."""
    prose, _ = split_code(text)
    return [(bang == "!", target) for line in prose for bang, _, target in LINK.findall(line)]


def resolve(page: Path, target: str, root: Path = ROOT) -> str:
    """A link target as it is meant: a URL as is, a relative path as a path from the repository
    root (without its #anchor), so the same file linked from README.md and docs/x.md compares equal."""
    if SCHEME.match(target):
        return target
    path = target.split("#", 1)[0]
    if not path:
        return str(page.relative_to(root))
    return str((page.parent / path).resolve().relative_to(root.resolve()))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: Counter = Counter()
    found = set()
    for line in split_code(text)[0]:
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        found.add(base if not seen[base] else f"{base}-{seen[base]}")
        seen[base] += 1
    return found


def broken_links(root: Path = ROOT) -> list[str]:
    """Relative links in README.md and docs/*.md whose file or heading does not exist."""
    problems = []
    for page in pages(root):
        text = page.read_text()
        for _, target in links(text):
            if SCHEME.match(target):
                continue
            path, _, anchor = target.partition("#")
            dest = page if not path else (page.parent / path)
            where = f"{page.relative_to(root)}: {target}"
            if not dest.exists():
                problems.append(f"{where}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
                problems.append(f"{where}: no heading with that anchor in {dest.name}")
    return problems


def lost_content(old: str, root: Path = ROOT) -> list[str]:
    """What of the old README occurs nowhere in README.md + docs/*.md now."""
    for before, after in CORRECTIONS.items():
        old = old.replace(before, after)
    texts = {page: page.read_text() for page in pages(root)}
    corpus = "\n".join(texts.values())
    problems = []

    for pattern in (DECIMAL, WHOLE):
        old_numbers, new_numbers = Counter(pattern.findall(old)), Counter(pattern.findall(corpus))
        for number, count in sorted(old_numbers.items()):
            if new_numbers[number] < count:
                problems.append(f"number {number}: {count} times before, {new_numbers[number]} now")

    new_lines = set(table_rows(corpus)) | set(code_lines(corpus)) | {
        normalise(line) for line in corpus.splitlines()}
    for row in table_rows(old):
        if row not in new_lines:
            problems.append(f"table row: {row}")
    for line in code_lines(old):
        if line not in new_lines:
            problems.append(f"code line: {line}")

    new_spans = set().union(*(code_spans(text) for text in texts.values()))
    for span in sorted(code_spans(old)):
        if span not in new_spans:
            problems.append(f"code span: `{span}`")

    new_targets = {(image, resolve(page, target, root)) for page, text in texts.items()
                   for image, target in links(text)}
    for image, target in links(old):
        if (image, resolve(root / "README.md", target, root)) not in new_targets:
            problems.append(f"{'image' if image else 'link'}: {target}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default=OLD_REF, help="the commit whose README.md is the reference")
    args = parser.parse_args(argv)
    old = old_readme(args.ref)
    if old is None:
        print(f"no README.md at {args.ref} (not a git checkout with that commit)", file=sys.stderr)
        return 2
    lost, broken = lost_content(old), broken_links()
    counts = {
        "decimal numbers": len(DECIMAL.findall(old)), "whole numbers": len(WHOLE.findall(old)),
        "table rows": len(table_rows(old)), "code-block lines": len(code_lines(old)),
        "code spans": len(code_spans(old)), "images and links": len(links(old)),
    }
    print(f"README.md at {args.ref}: " + ", ".join(f"{n} {what}" for what, n in counts.items()))
    print(f"pages now: {', '.join(str(p.relative_to(ROOT)) for p in pages())}")
    for before, after in CORRECTIONS.items():
        print(f"corrected: {before!r} -> {after!r}")
    for problem in lost:
        print(f"LOST {problem}")
    for problem in broken:
        print(f"BROKEN {problem}")
    print(f"{len(lost)} lost, {len(broken)} broken links")
    return 1 if lost or broken else 0


if __name__ == "__main__":
    sys.exit(main())
