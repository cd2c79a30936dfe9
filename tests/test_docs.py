"""The README and the docs hold: every relative link leads to a file, every Python sample
runs as written (on a database of its own, given as a plain `postgresql://` DATABASE_URL,
the form `python -m app.db.embedded url` prints), and every command shown names a script, module,
tool and options that exist."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from app.db.settings import PROJECT_ROOT
from app.testing.databases import CloneFactory
from tests.helpers.tools import run_tool

PAGES = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
VENV_BIN = Path(sys.executable).parent


def blocks(language: str) -> list[tuple[str, str]]:
    """(where, code) of every fenced block in `language`, on every page."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for number, match in enumerate(re.finditer(rf"```{language}\n(.*?)```", text, re.S)):
            found.append((f"{page.relative_to(PROJECT_ROOT)}#{number + 1}", match.group(1)))
    return found


def test_every_relative_link_leads_to_a_file() -> None:
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(PROJECT_ROOT)}: {target}")
    assert broken == []


def test_the_readme_is_short_enough_to_read_first() -> None:
    assert len((PROJECT_ROOT / "README.md").read_bytes()) <= 8 * 1024


@pytest.mark.parametrize(("where", "code"), blocks("python"), ids=[w for w, _ in blocks("python")])
async def test_every_python_sample_runs_as_written(
    where: str, code: str, database_of_its_own: CloneFactory, tmp_path: Path
) -> None:
    clone = await database_of_its_own()  # as a user writes it: postgresql://user:pw@host/db
    url = clone.set(drivername="postgresql").render_as_string(hide_password=False)
    result = run_tool("-c", code, env={"DATABASE_URL": url, "APP_ENV": "test"}, cwd=tmp_path)
    assert result.returncode == 0, f"{where}:\n{result.stderr[-3000:]}"


def commands() -> list[tuple[str, list[str]]]:
    """(where, words) of every command line in the docs' shell blocks."""
    found = []
    for where, code in blocks("bash"):
        for line in code.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            for command in re.split(r"&&|\|\||;|\|", line):
                words = shlex.split(command.replace("$(", " ").replace(")", " "))
                while words and "=" in words[0] and not words[0].startswith("-"):
                    words = words[1:]  # VAR=value before the command
                if words:
                    found.append((where, words))
    return found


def test_every_command_shown_exists_with_its_options() -> None:
    wrong = []
    for where, words in commands():
        program = words[0]
        if program.startswith(".venv/bin/") and not (VENV_BIN / Path(program).name).exists():
            wrong.append(f"{where}: {program} is not installed by the README's command")
        for number, word in enumerate(words):
            target: tuple[str, ...] | None = None
            if re.fullmatch(r"(scripts|benchmarks)/\w+\.(py|sh)", word):
                target = (str(PROJECT_ROOT / word),)
                if not (PROJECT_ROOT / word).exists():
                    wrong.append(f"{where}: {word} does not exist")
                    continue
            elif word == "-m" and Path(program).name.startswith("python") and words[number + 1 :]:
                target = ("-m", words[number + 1])
            if target is None or target[-1].endswith(".sh"):
                continue
            shown = {w.split("=")[0] for w in words[number + 1 :] if w.startswith("--")}
            usage = run_tool(*target, "--help", env={}, cwd=PROJECT_ROOT)
            if usage.returncode != 0:
                wrong.append(f"{where}: {' '.join(target)} --help failed: {usage.stderr[-200:]}")
            wrong += [
                f"{where}: {' '.join(target)} has no {o}" for o in shown - _options(usage.stdout)
            ]
    assert wrong == []


def _options(usage: str) -> set[str]:
    return set(re.findall(r"--[\w-]+", usage))
