"""Lint every Alembic revision, as CI does: squawk over their offline SQL, and a check of
what squawk cannot see.

    python scripts/lint_migrations.py

1. squawk (`.squawk.toml`) over the SQL of `upgrade base:head` and of the downgrade from
   head to the last revision that may be downgraded to.
2. Every revision must change the schema through `app.db.safe_migrations`: a direct
   `op.<operation>(...)` call (plain `op.add_column`, `op.create_index`, ...: one
   transaction, locks held for the whole scan) fails, like strong_migrations does, unless
   its line ends with `# lint: accepted <reason>`. Each unsafe operation a revision
   accepts, that way or with a safe operation's `accepted="why"`, is listed with its
   reason.

Exit 0 when clean, 1 with one line per problem.
"""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from app.db.migrations import MIGRATIONS, alembic_config
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
        f"app.db.safe_migrations (or end the line with '{ACCEPTED}<reason>')"
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


def offline_sql(config: Config | None = None) -> tuple[str, str]:
    """The SQL of upgrading from nothing to head, and of downgrading as far as allowed."""
    config = config or alembic_config()
    script = ScriptDirectory.from_config(config)
    upgrade = io.StringIO()
    config.output_buffer = upgrade
    command.upgrade(config, "base:head", sql=True)
    # Down to the newest revision whose own downgrade is refused (the baseline), or base.
    floor = "base"
    for revision in script.walk_revisions():
        if getattr(revision.module, "IRREVERSIBLE", None):
            floor = revision.revision
            break
    downgrade = io.StringIO()
    config.output_buffer = downgrade
    head = script.get_current_head()
    if head != floor:
        command.downgrade(config, f"{head}:{floor}", sql=True)
    return upgrade.getvalue(), downgrade.getvalue()


def squawk(*scripts: str) -> tuple[int, str]:
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for name, text in zip(("upgrade.sql", "downgrade.sql"), scripts, strict=True):
            path = Path(folder) / name
            path.write_text(text, encoding="utf-8")
            paths.append(str(path))
        result = subprocess.run(
            [str(Path(sys.executable).parent / "squawk"), "--config", ".squawk.toml", *paths],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
        )
    return result.returncode, result.stdout + result.stderr


def main() -> int:
    problems, risks = [], []
    revisions = sorted(VERSIONS.glob("*.py"))
    for path in revisions:
        source, name = path.read_text("utf-8"), str(path.relative_to(PROJECT_ROOT))
        problems += unsafe_calls(source, name)
        risks += accepted_risks(source, name)
    for risk in risks:
        print(risk)
    code, report = squawk(*offline_sql())
    if code != 0:
        print(report.strip())
        problems.append("squawk found locking hazards in the revisions' SQL (above)")
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(
            f"lint_migrations: {len(revisions)} revisions clean (squawk over base:head and back,"
            f" safe operations only); {len(risks)} accepted risks"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
