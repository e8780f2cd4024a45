"""The measure stage's service operations return frozen results that every shell renders the same way."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from omniweave.errors import InputError
from omniweave.measure.attribution import MODELS, attribute, read_paths_csv
from omniweave.measure.period import parse_day, parse_moment
from omniweave.measure.service.attribution import AttributionRequest, attribution_report, model_names
from omniweave.profiles.service.clv import ClvFitRequest, fit_clv
from omniweave.shells.render import csv_text, json_text
from tests.measure.test_attribution import SMALL, write_paths


def test_the_period_parser_reads_days_and_instants_in_utc() -> None:
    assert parse_moment("2026-06-01", "--since") == datetime(2026, 6, 1, tzinfo=UTC)
    assert parse_moment("2026-06-30", "--until", end=True) == datetime(2026, 7, 1, tzinfo=UTC)  # the day included
    assert parse_moment("2026-06-30T10:00:00+02:00", "--until", end=True) == datetime(2026, 6, 30, 8, tzinfo=UTC)
    assert parse_moment(None, "--since") is None and parse_day(None, "since") is None
    assert parse_day("2026-03-01", "since") == date(2026, 3, 1)
    with pytest.raises(InputError, match="field '--since': got 'yesterday'; expected a date"):
        parse_moment("yesterday", "--since")
    with pytest.raises(InputError, match="field 'until': got 'March'; expected a day such as"):
        parse_day("March", "until")


def test_model_names() -> None:
    assert model_names("all") == MODELS and model_names("linear") == ("linear",)
    with pytest.raises(InputError, match="field '--model': got 'lastish'; expected one of first_touch"):
        model_names("lastish", "--model")


def test_attribution_report_on_a_paths_file_is_frozen_and_matches_the_library(runtime, tmp_path: Path) -> None:
    file = write_paths(tmp_path / "paths.csv", SMALL)
    report = attribution_report(runtime, AttributionRequest(paths=file, half_life=2.0, order=2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.results = ()  # type: ignore[misc]
    document = json.loads(json_text(report.to_dict()))
    assert document["total_conversions"] == 5 and set(document["models"]) == set(MODELS)
    table = read_paths_csv(file)
    for model in MODELS:
        expected = attribute(table, model, half_life=2.0, order=2)
        assert document["models"][model]["channels"]["c"]["value"] == pytest.approx(expected.value["c"], abs=1e-12)
    assert "source" not in document and not report.from_log
    records = report.records()
    assert report.columns() == ("model", "channel", "conversions", "value")
    assert len(records) == len(MODELS) * len(table.channels)
    assert csv_text(records, report.columns()).splitlines()[0] == "model,channel,conversions,value"


def test_attribution_report_rejects_an_unknown_model(runtime, tmp_path: Path) -> None:
    file = write_paths(tmp_path / "paths.csv", SMALL)
    with pytest.raises(InputError, match="field 'model'"):
        attribution_report(runtime, AttributionRequest(paths=file, models=("nonsense",)))


def test_attribution_report_from_a_home_without_persons_says_what_to_run(runtime) -> None:
    with pytest.raises(InputError, match="omniweave resolve"):
        attribution_report(runtime, AttributionRequest())


def test_clv_fit_is_a_frozen_result_with_records(tmp_path: Path) -> None:
    file = tmp_path / "t.csv"
    file.write_text(
        "customer,day,amount\n"
        + "".join(
            f"c{c},2026-0{1 + (c * k) % 6}-{10 + k:02d},{10 + c * k}\n"
            for c in range(1, 40)
            for k in range(1, c % 4 + 2)
        )
    )
    fit = fit_clv(ClvFitRequest(file, "customer", "day", "amount"))
    assert fit.customers == 39 and fit.gamma_gamma is not None
    assert {r["parameter"] for r in fit.records()} >= {"r", "alpha", "a", "b", "p", "q", "v", "log_likelihood"}
    assert json.loads(json_text(fit.to_dict()))["bgnbd"]["r"] == pytest.approx(fit.bgnbd["r"])
    with pytest.raises(InputError, match="missing column 'price'"):
        fit_clv(ClvFitRequest(file, "customer", "day", "price"))
