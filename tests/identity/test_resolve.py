"""`resolve` on a small demo world: the identities dataset, incremental runs, splits, the ground truth."""

from __future__ import annotations

import hashlib
import posixpath
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from omniweave.identity.graph import Observation
from omniweave.identity.service.resolve import (
    evaluate_against_ground_truth,
    load_stitcher,
    resolve,
    save_stitcher,
)
from omniweave.runtime import Runtime
from omniweave.settings import Settings, load_settings
from tests.conftest import shared_demo_world


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = shared_demo_world(tmp_path_factory, "identity", customers=150, days=10, seed=5, bulk=True)
    return home


def _identities(runtime: Runtime) -> list[dict[str, str]]:
    path = posixpath.join(runtime.log.dataset_path("identities"), "identities.parquet")
    return pq.read_table(path).to_pylist()


def test_resolve_writes_every_user_and_anonymous_id(home: Path) -> None:
    runtime = Runtime(Settings(home=str(home)))
    summary = resolve(runtime)  # the demo has resolved already: this run may find nothing new
    assert summary.observations > 0 and summary.persons > 0 and summary.merges > 0
    rows = _identities(runtime)
    listed = {(r["kind"], r["value"]) for r in rows}
    events = (
        runtime.warehouse()
        .sql(
            "SELECT DISTINCT 'user_id' AS kind, user_id AS value FROM events WHERE user_id IS NOT NULL "
            "UNION SELECT DISTINCT 'anonymous_id', anonymous_id FROM events WHERE anonymous_id IS NOT NULL"
        )
        .to_pylist()
    )
    assert {(r["kind"], r["value"]) for r in events} <= listed
    assert all(r["person_id"] for r in rows)
    emails = [r for r in rows if r["kind"] == "email"]
    assert emails and all(r["value_sha256"] == hashlib.sha256(r["value"].encode()).hexdigest() for r in emails)
    assert all(r["value_sha256"] is None for r in rows if r["kind"] in ("anonymous_id", "loyalty_card"))
    assert ("loyalty_card", "0000000000") not in listed  # the till's placeholder card links nobody
    # the same run again reads nothing new and changes nothing
    again = resolve(runtime)
    assert again.events == 0 and again.persons == summary.persons
    assert sorted(map(tuple, (r.values() for r in _identities(runtime)))) == sorted(
        map(tuple, (r.values() for r in rows))
    )


def test_precision_and_recall_against_the_ground_truth(home: Path) -> None:
    runtime = Runtime(Settings(home=str(home)))
    resolve(runtime)
    result = evaluate_against_ground_truth(runtime, home / "demo")
    # never a wrong merge; nearly every pair the data can tie is found (the default demo: see docs/identity.md)
    assert result.precision >= 0.995
    assert result.recall_identifiable >= 0.95
    # identifiers nothing ties to anything (browsers that never log in) are counted apart, never dropped
    assert result.recall < result.recall_identifiable and result.identifiable < result.identifiers
    assert result.identifiable_pairs < result.true_pairs


def test_state_is_incremental_and_a_split_sticks(home: Path, tmp_path: Path) -> None:
    runtime = Runtime(Settings(home=str(home)))
    resolve(runtime)
    stitcher = load_stitcher(runtime)
    before = stitcher.recomputations
    person, ids = next((p, ids) for p, ids in stitcher.persons().items() if ids.get("user_id") and ids.get("email"))
    late = Observation(
        "late-1", "2099-01-01T00:00:00.000000Z", (("user_id", ids["user_id"][0]), ("anonymous_id", "late-anon"))
    )
    stitcher.add([late])
    assert stitcher.recomputations == before  # appended, not re-derived
    email = ("email", ids["email"][0])
    stitcher.split(person, email)
    save_stitcher(runtime, stitcher)
    resolve(runtime)
    reloaded = load_stitcher(runtime)
    assert reloaded.person_of(email) != reloaded.person_of(("user_id", ids["user_id"][0]))
    assert reloaded.person_of(("anonymous_id", "late-anon")) == reloaded.person_of(("user_id", ids["user_id"][0]))


def test_identity_rules_come_from_omniweave_toml(tmp_path: Path) -> None:
    from omniweave.errors import ConfigError
    from omniweave.identity.graph import Observation
    from omniweave.identity.service.resolve import default_rules, rules_from_config

    (tmp_path / "omniweave.toml").write_text(
        '[identity]\nkinds = ["crm_id"]\nlimits = { crm_id = 1, email = 2 }\nblocked = ["Guest@Shop.example"]\n'
    )
    settings = load_settings(env={}, home=str(tmp_path))  # <home>/omniweave.toml, read once
    rules = default_rules(Runtime(settings))
    assert rules.priorities.index("crm_id") < rules.priorities.index("device_id")
    assert rules.limits["crm_id"] == 1 and rules.limits["email"] == 2 and rules.limits["phone"] == 5
    stitcher = load_stitcher(Runtime(settings))
    stitcher.add(
        [
            Observation("m1", "2026-01-01T00:00:00Z", (("crm_id", "A1"), ("email", "guest@shop.example"))),
            Observation("m2", "2026-01-01T00:00:01Z", (("crm_id", "A1"), ("email", "a@x.com"))),
            Observation("m3", "2026-01-01T00:00:02Z", (("crm_id", "B2"), ("email", "a@x.com"))),
        ]
    )
    assert ("email", "guest@shop.example") not in stitcher.parent  # blocked by the config
    assert stitcher.person_of(("crm_id", "B2")) != stitcher.person_of(("crm_id", "A1"))  # at most 1 crm_id
    for bad, says in [
        ({"kindz": []}, "unknown key 'kindz'"),
        ({"limits": {"shoe": 1}}, "limits.shoe: unknown"),
        ({"limits": {"email": 0}}, "whole number ≥ 1, got 0"),
        ({"kinds": ["email"]}, "built-in"),
        ({"blocked": "x"}, "list of strings"),
    ]:
        with pytest.raises(ConfigError, match=says):
            rules_from_config(bad)
    (tmp_path / "omniweave.toml").write_text('[identity]\nlimits = { email = "many" }\n')
    with pytest.raises(ConfigError, match=r"omniweave.toml: \[identity\]: limits.email: expected a whole number"):
        default_rules(Runtime(load_settings(env={}, home=str(tmp_path))))
