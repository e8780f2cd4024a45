"""Every stage's service runs inside `memory_guard`: out of memory under the `memory_limit` setting is a
MemoryLimitError naming the stage and the setting (storage/guard.py), not a DuckDB traceback or a kill."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from omniweave.identity.service.resolve import resolve
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.storage.engine import MemoryLimitError


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from omniweave.demo.runner import run_demo

    home = tmp_path_factory.mktemp("guard-demo")
    run_demo(Settings(home=str(home)), customers=120, days=10, seed=3, console=None, bulk=True)
    resolve(Runtime(Settings(home=str(home))), probabilistic=False)
    return home


def _profiles(runtime: Runtime) -> Any:
    from omniweave.profiles.service.build import build_profiles

    return build_profiles(runtime, traits=[])


def _kpis(runtime: Runtime) -> Any:
    from omniweave.measure.service.reports import KpiRequest, kpi_report

    return kpi_report(runtime, KpiRequest(period="month"))


@pytest.mark.parametrize(("stage", "run"), [("profiles", _profiles), ("kpis", _kpis)])
def test_a_stage_out_of_memory_names_the_stage_and_the_setting(resolved: Path, stage: str, run: Any) -> None:
    runtime = Runtime(Settings(home=str(resolved), memory_limit="1MB"))
    with pytest.raises(MemoryLimitError) as caught:
        run(runtime)
    message = str(caught.value)
    assert message.startswith(f"{stage} ran out of memory under memory_limit = 1 MiB"), message
    assert "raise the memory_limit setting" in message
    # under the default limit the same call works: the error came from the limit, not from the stage
    run(Runtime(Settings(home=str(resolved))))
