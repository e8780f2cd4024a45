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
