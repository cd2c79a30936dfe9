"""The import direction of `app.db` stays one way: the connection core at the bottom, then
the embedded server and the migration toolkit, then the development reset; nothing in
`app.db` imports the tests' helpers, and only the reset (its sample data: jobs get their
status as real ones do) imports the job service, which sits on the core."""

from __future__ import annotations

import ast
from pathlib import Path

import app

APP = Path(app.__file__).parent
LAYERS = {"core": 0, "embedded": 1, "migrate": 1, "reset": 2}
"""A module may import its own package and the layers below it, never one beside or above."""
SHIMS = {"app/db/safe_migrations.py", "app/db/schema.py"}
"""Kept where revisions import them from; they only re-export."""


def layer_of(module: str) -> str | None:
    """`core`, `embedded`, `migrate` or `reset` for a module of app.db, else None."""
    parts = module.split(".")
    if parts[:2] != ["app", "db"]:
        return None
    if len(parts) > 2 and parts[2] in LAYERS:
        return parts[2]
    return "core"


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("app.")}


def violations(app_dir: Path) -> list[str]:
    """Each import in `app_dir/db` that goes sideways or up, one line each."""
    wrong = []
    for path in sorted((app_dir / "db").rglob("*.py")):
        relative = path.relative_to(app_dir.parent).as_posix()
        if relative in SHIMS:
            continue
        module = relative.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        own = layer_of(module) or "core"
        for name in sorted(imported(path)):
            target = layer_of(name)
            if name.startswith("app.testing") or (
                name.startswith("app.services") and own != "reset"
            ):
                wrong.append(f"{relative} imports {name}")
            elif target is not None and target != own and LAYERS[target] >= LAYERS[own]:
                wrong.append(f"{relative} ({own}) imports {name} ({target})")
    return wrong


def test_app_db_imports_flow_one_way() -> None:
    assert violations(APP) == []


def test_the_check_finds_imports_that_go_up_or_sideways(tmp_path: Path) -> None:
    files = {
        "db/urls.py": "from app.db.reset import init_db\n",  # up
        "db/migrate/steps.py": "from app.db.embedded import server\n",  # sideways
        "db/embedded/server.py": "import app.testing.plugin\n",
        "db/reset/init_db.py": "from app.db.migrate import steps\nfrom app.db import urls\n",
    }
    for name, source in files.items():
        (tmp_path / "app" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "app" / name).write_text(source)
    assert violations(tmp_path / "app") == [
        "app/db/embedded/server.py imports app.testing.plugin",
        "app/db/migrate/steps.py (migrate) imports app.db.embedded (embedded)",
        "app/db/migrate/steps.py (migrate) imports app.db.embedded.server (embedded)",
        "app/db/urls.py (core) imports app.db.reset (reset)",
        "app/db/urls.py (core) imports app.db.reset.init_db (reset)",
    ]


def test_names_users_imported_before_the_move_still_import() -> None:
    from app.db import safe_migrations, schema
    from app.db.migrate import safe
    from app.db.reset import init_db

    assert schema.init_db is init_db
    assert safe_migrations.add_column is safe.add_column
    assert set(safe.__all__) <= set(dir(safe_migrations))
