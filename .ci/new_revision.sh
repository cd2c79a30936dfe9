# The platform's first new revision, as a new user writes it (sourced by .ci/run): in a
# clone, change the models only, autogenerate as the docs say, then run CI's checks and
# the whole suite on it. Nothing but the models may need an edit.

new_revision_by_a_user() {
    local clone="$CI_WORK/new revision"
    git clone -q "$PWD" "$clone"
    (
        cd "$clone"
        eval "$(readme_command 1)" >/dev/null
        # 1. A nullable column with an index, and an integer column, on collection_jobs.
        python3 - <<'PY'
from pathlib import Path

path = Path("app/models/collection_job.py")
source = path.read_text()
anchor = "    analyst: Mapped[Analyst] = relationship("
added = (
    "    source: Mapped[str | None] = mapped_column(Text, index=True)\n"
    "    retries: Mapped[int | None] = mapped_column(Integer)\n\n"
)
source = source.replace(anchor, added + anchor, 1)
source = source.replace("from sqlalchemy import ForeignKey,", "from sqlalchemy import ForeignKey, Integer,")
path.write_text(source)
PY
        .venv/bin/ruff check --fix --select I -q app/models/collection_job.py  # as an editor sorts imports
        # 2. A new table with a foreign key to collection_jobs.
        cat > app/models/job_note.py <<'PY'
"""Notes an analyst writes on a collection job."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, Text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAt, UUIDPrimaryKey


class JobNote(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "job_notes"

    collection_job_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("collection_jobs.id"), index=True
    )
    body: Mapped[str] = mapped_column(Text)
PY
        sed -i -e 's/^from app.models.enums import.*/&\nfrom app.models.job_note import JobNote/' \
            -e 's/^    "JobStatus",/    "JobNote",\n&/' app/models/__init__.py
        # 3. The revision, exactly as the docs say, against a database at the current head.
        .venv/bin/alembic revision --autogenerate -m "add source, retries and job notes"
        git add -A
        # 4. CI's checks and the whole suite, unchanged.
        .venv/bin/ruff check .
        .venv/bin/ruff format --check .
        .venv/bin/mypy
        .venv/bin/python scripts/lint_migrations.py
        .venv/bin/python scripts/export_migration_sql.py --check
        eval "$(readme_command 2)"
        .venv/bin/python -m app.db.embedded --test stop >/dev/null
        .venv/bin/python -m app.db.embedded stop >/dev/null
    )
}
