"""Audience exports on the demo world (issue 22 §7: every export was empty, nobody in the demo had
stated advertising consent). The session's demo home (tests/conftest.py `demo_home`) imports README's
examples, whose cookie-banner choices allow advertising for about 60 % of visitors
(demo/examples.py `ADVERTISING_YES`): README's `audiences export cart_abandoners --to google` exports
some members and skips others for no consent."""

from __future__ import annotations

import shutil
from pathlib import Path

from omniweave.activate.service.audiences import export_audience
from omniweave.runtime import Runtime
from omniweave.settings import Settings


def test_readmes_audience_export_on_the_demo_is_not_empty(demo_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(demo_home, home)
    runtime = Runtime(Settings(home=str(home)))
    try:
        summary = export_audience(runtime, "cart_abandoners", "google", output=tmp_path / "out")
    finally:
        runtime.close()
    assert summary.members > 0, summary.describe()
    assert summary.exported > 0 and summary.keys >= summary.exported, summary.describe()
    assert summary.skipped_no_consent > 0, summary.describe()  # consent is asked, not assumed
    written = sum(len(Path(f).read_text(encoding="utf-8").splitlines()) - 1 for f in summary.files if "-adds" not in f)
    assert written > 0
