"""Wall time of `python scripts/init_db.py --yes` on the embedded server, process start included.

    python benchmarks/init_db_timing.py [--warm-runs N]

cold:    no data folder yet: initdb, server start, database creation, schema.
restart: data folder exists but the server is stopped (after a reboot, say).
warm:    server running, database present: the everyday case.
Uses a throwaway data folder (EMBEDDED_PGDATA), never the development database.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed_init_db(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "init_db.py"), "--yes"],
        env=env,
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def stop_server(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "app.db.embedded", "stop"], env=env, check=True, capture_output=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-runs", type=int, default=10)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-"))
    folder.chmod(0o755)  # our own folder: as root, the server's user must enter it
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "APP_ENV")}
    env["EMBEDDED_PGDATA"] = str(folder / "pgdata")
    try:
        cold = timed_init_db(env)
        warm = [timed_init_db(env) for _ in range(args.warm_runs)]
        stop_server(env)
        restart = timed_init_db(env)
    finally:
        stop_server(env)
        shutil.rmtree(folder, ignore_errors=True)

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    print(f"cold    {cold:6.2f} s   (target <= 5.0 s)")
    print(f"restart {restart:6.2f} s")
    print(
        f"warm    {statistics.median(warm):6.2f} s median, {max(warm):.2f} s max "
        f"over {len(warm)} runs   (target <= 1.5 s)"
    )


if __name__ == "__main__":
    main()
