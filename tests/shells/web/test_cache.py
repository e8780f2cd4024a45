"""The dashboard's report cache (shells/web/app.py `Context.cached`): a report is computed once per change of
the data; on the server's pages a change does not make the next view wait, the new report is made in the
background; without that (tests, the warm-up) the view waits for it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from starlette.datastructures import QueryParams

from omniweave.privacy.roles import user_principal
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.shells.web import app


def _idle(timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while app._REFRESHING:
        assert time.monotonic() < deadline, "the background refresh did not end"
        time.sleep(0.01)


def test_a_report_is_kept_until_the_data_changes_then_made_again(tmp_path: Path) -> None:
    runtime = Runtime(Settings(home=str(tmp_path / "home")))
    try:
        day = Path(runtime.log.dataset_path("events")) / "date=2026-01-01"
        day.mkdir(parents=True)
        (day / "a.parquet").write_bytes(b"a")
        owner = user_principal("u1", "owner@example.com", "owner")
        served = app.Context(runtime, owner, QueryParams(""), refresh_in_background=True)
        fresh = app.Context(runtime, owner, QueryParams(""))
        made: list[int] = []
        gate = threading.Event()

        def report() -> int:
            if made:  # every computation after the first waits until the test lets it go
                assert gate.wait(30)
            made.append(len(made) + 1)
            return made[-1]

        assert served.cached("kpis", report) == 1
        assert served.cached("kpis", report) == 1 and made == [1]  # the same data: kept
        (day / "b.parquet").write_bytes(b"b")  # the loader adds a file
        assert served.cached("kpis", report) == 1  # the last report at once, while the new one is made
        assert served.cached("kpis", report) == 1 and made == [1]  # one refresh, not one per view
        gate.set()
        _idle()
        assert made == [1, 2] and served.cached("kpis", report) == 2
        (day / "c.parquet").write_bytes(b"c")
        assert fresh.cached("kpis", report) == 3  # without the background refresh the view waits for it
        other = app.Context(
            Runtime(Settings(home=str(tmp_path / "other"))), owner, QueryParams(""), refresh_in_background=True
        )
        assert other.cached("kpis", lambda: "another home") == "another home"  # a report per home
    finally:
        runtime.close()
