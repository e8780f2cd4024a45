"""The profile insights against the demo world's truth (the shared demo fixture: 600 customers, 60 days):
each far above chance and at least 90% of the oracle that knows the world's model and sees the same events."""

from __future__ import annotations

from pathlib import Path

from omniweave.demo.insight_check import check_insights
from omniweave.runtime import Runtime
from omniweave.settings import Settings


def test_insights_agree_with_the_truth_near_the_oracle(demo_home: Path) -> None:
    rt = Runtime(Settings(home=str(demo_home)))
    try:
        check = check_insights(rt, demo_home / "demo")
    finally:
        rt.close()
    rows = {r.insight: r for r in check.rows}
    assert set(rows) == {
        "preferred messaging channel",
        "best hour (±2 h)",
        "most responsive promotion",
        "favourite category",
    }
    for r in check.rows:
        assert r.people >= 50, (r.insight, r.people)  # enough people to say anything
        assert r.agreement >= 0.9 * r.oracle, r.to_dict()
        assert r.oracle > r.chance, r.to_dict()
    # far above chance where the data carries the signal
    assert rows["best hour (±2 h)"].agreement >= rows["best hour (±2 h)"].chance + 0.25
    assert rows["favourite category"].agreement >= 3 * rows["favourite category"].chance
    assert rows["preferred messaging channel"].agreement >= rows["preferred messaging channel"].chance + 0.05
    text = check.describe()
    assert "oracle" in text and all(len(line) <= 80 for line in text.splitlines()), text
