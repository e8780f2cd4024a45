"""Data-subject requests as jobs (docs/privacy.md, "Jobs and receipts"): the API's worker thread finishes the
requests a stop or crash left pending or running when the app starts; a finished one run again changes
nothing. Its own small world: the module-scoped app of test_requests.py would run them first."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from omniweave.runtime import Runtime
from omniweave.shells.api.app import create_app
from tests.privacy.test_requests import _job
from tests.privacy.world import World, build_world, person, wait_until


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("privacy-jobs"), others=6)


def test_requests_left_pending_or_running_are_finished_when_the_server_starts(world: World) -> None:
    """A request made while no server ran (pending) and one a runner took and died with (running) are both
    run by the app's worker when it starts; running a finished request again changes nothing."""
    from omniweave.privacy.service.requests import claim, get, run, submit

    runtime = Runtime(world.settings)
    try:
        waiting = submit(runtime, "suppress", f"email:{person(5)['email']}", run_now=False)
        cut_off = submit(runtime, "export", f"email:{person(4)['email']}", run_now=False, keep_bundle=True)
        assert claim(runtime, cut_off.id) and not claim(runtime, cut_off.id)  # taken once only
        assert (get(runtime, waiting.id).status, get(runtime, cut_off.id).status) == ("pending", "running")
    finally:
        runtime.close()
    secret = Runtime(world.settings).store.create_secret_key("restart test")
    headers = {"Authorization": f"Bearer {secret}"}
    with TestClient(create_app(world.settings)) as client:

        def both_done() -> bool:
            states = [client.get(f"/v1/privacy/requests/{r.id}", headers=headers).json() for r in (waiting, cut_off)]
            return all(state["status"] == "done" for state in states)

        assert wait_until(both_done, timeout=120)
        shown = client.get(f"/v1/privacy/requests/{cut_off.id}/bundle", headers=headers)
        assert shown.status_code == 200 and shown.json()["identifiers"]
        assert client.get(f"/v1/privacy/requests/{waiting.id}/bundle", headers=headers).status_code == 404
        lifted = _job(client, headers, {"kind": "unsuppress", "identifier": f"email:{person(5)['email']}"})
        assert lifted["status"] == "done"
    runtime = Runtime(world.settings)
    try:
        before = get(runtime, waiting.id)
        again = run(runtime, waiting.id)
        assert again.status == "done" and again.receipts == before.receipts
    finally:
        runtime.close()


def test_audience_exports_skip_people_suppressed_or_withdrawn_since_the_profiles_were_built(world: World) -> None:
    """An export after a suppression (privacy_blocked) and an advertising withdrawal through the consent
    history leaves both people out — with the profiles, segments and their advertising yes unchanged — and
    takes them out of the platform's list (removes); lifting the suppression brings that person back."""
    from omniweave.activate.service.audiences import export_audience
    from omniweave.privacy.service.consent import record_consent
    from omniweave.privacy.service.requests import submit

    runtime = Runtime(world.settings)
    try:

        def exported() -> set[str]:
            rows = runtime.warehouse().sql(
                "SELECT DISTINCT person_id FROM audience_exports WHERE segment_id = 'omnichannel_buyers' "
                "AND platform = 'csv'"
            )
            return {r["person_id"] for r in rows.to_pylist()}

        before = export_audience(runtime, "omnichannel_buyers", "csv")
        everyone = sorted(exported())
        assert before.skipped_privacy == 0 and len(everyone) == before.exported >= 3
        suppressed, withdrawn = everyone[0], everyone[1]
        assert submit(runtime, "suppress", suppressed).status == "done"
        record_consent(runtime, withdrawn, "advertising", False)
        after = export_audience(runtime, "omnichannel_buyers", "csv")
        assert after.skipped_privacy == 2 and after.exported == before.exported - 2
        assert exported() == set(everyone) - {suppressed, withdrawn}
        assert after.removes >= 2 and "2 skipped as suppressed or deleted" in after.describe()
        assert submit(runtime, "unsuppress", suppressed).status == "done"
        again = export_audience(runtime, "omnichannel_buyers", "csv")
        assert again.skipped_privacy == 1 and exported() == set(everyone) - {withdrawn}
    finally:
        runtime.close()
