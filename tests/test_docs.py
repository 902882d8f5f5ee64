"""README.md and docs/*.md stay true: every relative link leads to a file (and heading), and every
`afdserve` command the pages show parses with the real command line. That the split of the README
into docs/ lost no figure was checked once with `scripts/check_docs_figures.py` (its loss check
is tested here on a small tree); it is not a test, since figures change when models do."""

import argparse
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from afdserve.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_docs_figures", ROOT / "scripts" / "check_docs_figures.py")
docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(docs)


def test_relative_links_lead_to_files_and_headings():
    assert docs.broken_links() == []


def _page(root: Path, name: str, text: str) -> None:
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(text)


def test_the_check_notices_what_went_missing(tmp_path):
    old = ("# Old\n\nTop-1 82.6 on 1000 photos, `afdserve bench`.\n\n| a | b |\n| --- | --- |\n| 1.5 | x |\n\n"
           "![plot](results/plot.png)\n\n```sh\nafdserve build --missing\n```\n")
    _page(tmp_path, "results/plot.png", "")
    _page(tmp_path, "README.md", "# New\n\nSee [accuracy](docs/accuracy.md#figures) and [gone](docs/nope.md).\n")
    _page(tmp_path, "docs/accuracy.md", "# Accuracy\n\n## Other\n\n| a | b |\n| --- | --- |\n| 1.5 | y |\n\n"
                                        "![plot](../results/plot.png)\n")
    lost = docs.lost_content(old, root=tmp_path)
    assert "number 82.6: 1 times before, 0 now" in lost
    assert "number 1000: 1 times before, 0 now" in lost
    assert "table row: | 1.5 | x |" in lost
    assert "code line: afdserve build --missing" in lost
    assert "code span: `afdserve bench`" in lost
    assert not any(problem.startswith("image") for problem in lost)  # moved, path adjusted: same file
    broken = docs.broken_links(root=tmp_path)
    assert broken == ["README.md: docs/accuracy.md#figures: no heading with that anchor in accuracy.md",
                      "README.md: docs/nope.md: no such file"]


def test_anchors_follow_githubs_rules():
    text = ("# afdserve\n\n## The recipe's losses\n\n```sh\n# not a heading\n```\n\n"
            "## `afd_v3`: nine times\n\n## Limits\n\n## Limits\n")
    assert docs.anchors(text) == {"afdserve", "the-recipes-losses", "afd_v3-nine-times", "limits", "limits-1"}


def _shown_commands():
    """(page, argv) of every `afdserve` command in a code block of README.md and docs/*.md."""
    for page in docs.pages():
        _, code = docs.split_code(page.read_text())
        joined = "\n".join(code).replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("  #", 1)[0].strip()
            match = re.match(r"^(?:\.venv/bin/)?afdserve\s+(.*)$", line)
            if match:
                yield page.name, shlex.split(match.group(1))


SHOWN = list(_shown_commands())


def test_the_pages_show_commands():
    assert {argv[0] for _, argv in SHOWN} >= {"build", "models", "promote", "retire", "ab", "evaluate", "train"}


@pytest.mark.parametrize("page,argv", SHOWN, ids=[f"{page}:{' '.join(argv)[:60]}" for page, argv in SHOWN])
def test_shown_commands_parse(page, argv):
    assert argv[0] in COMMANDS, f"{page}: no command {argv[0]!r}"
    try:
        build_parser(argv[0]).parse_args(argv)
    except SystemExit as err:  # argparse's answer to an unknown flag or a missing argument
        pytest.fail(f"{page}: `afdserve {' '.join(argv)}` does not parse ({err})")


def test_flags_named_in_prose_exist():
    """Inline `afdserve CMD ... --flag` spans may be partial; their flags must still exist."""
    for page in docs.pages():
        for span in docs.code_spans(page.read_text()):
            match = re.match(r"^(?:\.venv/bin/)?afdserve ([a-z-]+)(.*)$", span)
            if not match or match.group(1) not in COMMANDS:
                continue
            command = match.group(1)
            subcommands = next(action for action in build_parser(command)._actions
                               if isinstance(action, argparse._SubParsersAction))
            known = {option for action in subcommands.choices[command]._actions
                     for option in action.option_strings}
            for flag in re.findall(r"--[a-z][a-z0-9-]*", match.group(2)):
                assert flag in known, f"{page.name}: `{span}`: {command} has no {flag}"
