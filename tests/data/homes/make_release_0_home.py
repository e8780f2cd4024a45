"""Write the home fixture `release_0/omniweave.db`: an operational store created by the release
before migrations (commit 98525b8), used by tests/storage/test_migrations.py to check that such a
home opens and upgrades in place.

It must run with the *previous* code on the path, never the current one:

    git worktree add /tmp/prev 98525b8
    PYTHONPATH=/tmp/prev/src .venv/bin/python tests/data/homes/make_release_0_home.py tests/data/homes/release_0
    git worktree remove /tmp/prev

The store gets two sources (write keys), two plain secret keys, six inbox rows, two consumer
positions and one import record; the file is left in rollback-journal mode so that it is one
self-contained file.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

try:
    from omniweave.adapters.opstore import OpStore  # the previous release's module path
except ModuleNotFoundError:
    sys.exit("run with PYTHONPATH=<a worktree of commit 98525b8>/src: this writes a home of the previous release")


def main(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "omniweave.db"
    if path.exists():
        path.unlink()
    store = OpStore(f"sqlite:///{path}")
    website, _ = store.create_source("website")
    till, _ = store.create_source("till")
    store.create_secret_key("admin")
    store.create_secret_key("dashboard")
    now = time.time()
    events = [
        (website, f"web-{i}", now - 60 + i, f'{{"messageId":"web-{i}","type":"track","event":"Page"}}'.encode())
        for i in range(4)
    ] + [(till, f"till-{i}", now - 30 + i, f'{{"messageId":"till-{i}","type":"track"}}'.encode()) for i in range(2)]
    assert store.append(events) == 6
    store.consumer("loader")
    store.mark_pending("loader", 4)
    store.commit_position("loader", 4)
    store.consumer("segments-live")
    store.commit_position("segments-live", 2)
    store.record_import("till", "/data/till.csv", 2, 2, 0, 0)
    store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("VACUUM")
    conn.close()
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "release_0"))
