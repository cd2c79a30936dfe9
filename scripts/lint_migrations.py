"""Lint every Alembic revision, as CI does: squawk over their offline SQL, and a check of
what squawk cannot see.

    python scripts/lint_migrations.py

1. squawk (`.squawk.toml`) over each revision's offline SQL, upgrade and downgrade (down
   to the last revision that may be downgraded to); each finding names the revision file,
   the direction, the rule, why it matters and the statement. Locking hazards are listed
   apart from squawk's other findings; both fail.
2. Every revision must change the schema through `app.db.migrate.safe`: a direct
   `op.<operation>(...)` call (plain `op.add_column`, `op.create_index`, ...: one
   transaction, locks held for the whole scan) fails, like strong_migrations does, unless
   its line ends with `# lint: accepted <reason>`. Each unsafe operation a revision
   accepts, that way or with a safe operation's `accepted="why"`, is listed with its
   reason.

Exit 0 when clean, 1 with one line per problem.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import Script, ScriptDirectory

from app.db.migrate.steps import MIGRATIONS, alembic_config, shorten
from app.db.settings import PROJECT_ROOT

VERSIONS = MIGRATIONS / "versions"
ACCEPTED = "# lint: accepted "


def _op_calls(source: str, path: str) -> Iterator[tuple[int, str, str]]:
    """Each direct `op.<name>(...)` call: its line, the name, the accepted reason or ""."""
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source, path)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "op"
        ):
            reason = lines[node.lineno - 1].partition(ACCEPTED)[2].strip()
            yield node.lineno, node.func.attr, reason


def unsafe_calls(source: str, path: str) -> list[str]:
    """`op.<name>(...)` calls not marked as accepted, one line each."""
    return [
        f"{path}:{line}: op.{name}() is not lock-safe on a big, busy table; use "
        f"app.db.migrate.safe (or end the line with '{ACCEPTED}<reason>')"
        for line, name, reason in _op_calls(source, path)
        if not reason
    ]


def accepted_risks(source: str, path: str) -> list[str]:
    """Every deliberately accepted unsafe operation, with its reason: a safe operation's
    `accepted="why"`, and a plain `op.*` call marked `# lint: accepted why`."""
    risks = [
        (line, f"op.{name}(): {reason}") for line, name, reason in _op_calls(source, path) if reason
    ]
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                value = keyword.value
                if keyword.arg == "accepted" and isinstance(value, ast.Constant):
                    risks.append((node.lineno, f"{value.value!s}"))
    return [f"{path}:{line}: accepted: {what}" for line, what in sorted(risks)]


LOCKING_RULES = frozenset(
    {
        "adding-field-with-default",
        "adding-foreign-key-constraint",
        "adding-not-nullable-field",
        "adding-required-field",
        "adding-serial-primary-key-field",
        "ban-alter-domain-with-add-constraint",
        "ban-concurrent-index-creation-in-transaction",
        "ban-drop-column",
        "ban-drop-database",
        "ban-drop-not-null",
        "ban-drop-table",
        "changing-column-type",
        "constraint-missing-not-valid",
        "disallowed-unique-constraint",
        "renaming-column",
        "renaming-table",
        "require-concurrent-index-creation",
        "require-concurrent-index-deletion",
        "require-lock-timeout",
        "require-timeout-settings",
    }
)
"""squawk's rules about locks and lost data; any other finding is reported apart."""


@dataclass(frozen=True)
class RevisionSQL:
    """The offline SQL of one direction of one revision."""

    path: str
    """The revision's file, relative to the checkout."""
    direction: str
    sql: str


@dataclass(frozen=True)
class Finding:
    path: str
    direction: str
    rule: str
    message: str
    help: str
    statement: str

    @property
    def locking(self) -> bool:
        return self.rule in LOCKING_RULES

    def __str__(self) -> str:
        return (
            f"{self.path} ({self.direction}): {self.rule}: {self.message} {self.help}"
            f"\n    in: {self.statement}"
        )


def revision_sql(config: Config | None = None) -> list[RevisionSQL]:
    """Each revision's own offline SQL, oldest first: its upgrade, and its downgrade when
    it is newer than the newest revision that may not be downgraded (the baseline)."""
    config = config or alembic_config()
    revisions = list(reversed(list(ScriptDirectory.from_config(config).walk_revisions())))
    floor = max(
        (n for n, r in enumerate(revisions) if getattr(r.module, "IRREVERSIBLE", None)),
        default=-1,
    )
    found: list[RevisionSQL] = []
    for number, revision in enumerate(revisions):
        down = revision.down_revision if isinstance(revision.down_revision, str) else "base"
        path = _relative(revision.path)
        found.append(RevisionSQL(path, "upgrade", _offline(config, "upgrade", down, revision)))
        if number > floor:
            sql = _offline(config, "downgrade", down, revision)
            found.append(RevisionSQL(path, "downgrade", sql))
    return found


def _relative(path: str) -> str:
    file = Path(path).resolve()
    return str(file.relative_to(PROJECT_ROOT)) if file.is_relative_to(PROJECT_ROOT) else str(file)


def _offline(config: Config, direction: str, down: str, revision: Script) -> str:
    buffer = io.StringIO()
    config.output_buffer = buffer
    if direction == "upgrade":
        command.upgrade(config, f"{down}:{revision.revision}", sql=True)
    else:
        command.downgrade(config, f"{revision.revision}:{down}", sql=True)
    return buffer.getvalue()


def squawk(scripts: list[RevisionSQL]) -> list[Finding]:
    """squawk (`.squawk.toml`) over each revision's SQL: what it found, by revision."""
    with tempfile.TemporaryDirectory() as folder:
        files = {}
        for number, script in enumerate(scripts):
            file = Path(folder) / f"{number:04d}.sql"
            file.write_text(script.sql, encoding="utf-8")
            files[str(file)] = script
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "squawk"),
                "--config",
                str(PROJECT_ROOT / ".squawk.toml"),
                "--reporter",
                "json",
                *files,
            ],
            capture_output=True,
            text=True,
        )
    try:
        reported = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        raise RuntimeError(f"squawk failed: {(result.stderr or result.stdout).strip()}") from None
    findings = []
    for item in reported:
        script = files[item["file"]]
        findings.append(
            Finding(
                script.path,
                script.direction,
                item["rule_name"],
                item["message"],
                item.get("help") or "",
                _statement_at(script.sql, int(item["line"])),
            )
        )
    return findings


def _statement_at(sql: str, line: int) -> str:
    """The statement that starts on (0-based) `line`, shortened to one line."""
    rest = "\n".join(sql.splitlines()[line:])
    return shorten(rest.split(";", 1)[0], 110)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="lint_migrations.py", description="Lint every revision as CI does."
    ).parse_args(argv)
    problems, risks = [], []
    revisions = sorted(VERSIONS.glob("*.py"))
    for path in revisions:
        source, name = path.read_text("utf-8"), _relative(str(path))
        problems += unsafe_calls(source, name)
        risks += accepted_risks(source, name)
    for risk in risks:
        print(risk)
    findings = squawk(revision_sql())
    for heading, group in (
        ("locking hazards (writers or readers would wait, or data would be lost)", True),
        ("other findings (not about locks; see .squawk.toml to configure a rule)", False),
    ):
        chosen = [str(f) for f in findings if f.locking is group]
        if chosen:
            print(f"{heading}:", *chosen, sep="\n", file=sys.stderr)
            problems.append(f"squawk: {len(chosen)} {heading.split(' (')[0]} (above)")
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(
            f"lint_migrations: {len(revisions)} revisions clean (squawk over each revision, up"
            f" and down, safe operations only); {len(risks)} accepted risks"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
