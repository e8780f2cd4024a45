"""Customer lifetime value as a service operation: a transactions file in, fitted BG/NBD and Gamma-Gamma
parameters out (profiles/clv.py holds the models), as one frozen result every shell renders the same way."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omniweave.profiles.clv import dropout_identification, fit_bgnbd, fit_gamma_gamma, summarize_table


@dataclass(frozen=True)
class ClvFitRequest:
    """A transactions file (CSV with a header, or Parquet) and the columns to read from it."""

    transactions: Path
    customer_col: str
    date_col: str
    value_col: str | None = None  # without it, BG/NBD only
    observation_end: str | None = None  # default: the last purchase's day
    time_unit: str = "days"


@dataclass(frozen=True)
class ClvFit:
    """The fitted parameters of BG/NBD (purchases) and, with a value column, Gamma-Gamma (spend)."""

    customers: int
    repeat_customers: int
    observation_end: str
    time_unit: str
    bgnbd: dict[str, Any]
    gamma_gamma: dict[str, Any] | None
    dropout: dict[str, Any] | None = None  # profiles.clv.DropoutCheck.to_dict(): is P(alive) identified?

    @property
    def dropout_identified(self) -> bool:
        """Whether the data pin down dropout, which P(alive) and the longer-range predictions rest on."""
        return self.dropout is None or bool(self.dropout["identified"])

    @property
    def converged(self) -> bool:
        """Whether every optimiser converged (if not, the parameters may be unreliable)."""
        return bool(self.bgnbd["converged"]) and (self.gamma_gamma is None or bool(self.gamma_gamma["converged"]))

    def to_dict(self) -> dict[str, Any]:
        """The fit as JSON values (the `--format json` document)."""
        return {
            "customers": self.customers,
            "repeat_customers": self.repeat_customers,
            "observation_end": self.observation_end,
            "time_unit": self.time_unit,
            "bgnbd": self.bgnbd,
            "gamma_gamma": self.gamma_gamma,
            "dropout": self.dropout,
        }

    def records(self) -> list[dict[str, Any]]:
        """One record per model parameter (and log-likelihood): model, parameter, value."""
        out = []
        for model in ("bgnbd", "gamma_gamma"):
            for name, value in (getattr(self, model) or {}).items():
                if name not in ("converged", "customers"):
                    out.append({"model": model, "parameter": name, "value": value})
        if self.dropout is not None:
            low, high = self.dropout["p_alive_interval"]
            out.append({"model": "bgnbd", "parameter": "mean_dropout", "value": self.dropout["dropout"]})
            out.append({"model": "bgnbd", "parameter": "repeat_buyers_p_alive_low", "value": low})
            out.append({"model": "bgnbd", "parameter": "repeat_buyers_p_alive_high", "value": high})
        return out


def fit_clv(request: ClvFitRequest) -> ClvFit:
    """Summarise the transactions per customer and fit BG/NBD (and Gamma-Gamma with a value column),
    and check whether the history identifies dropout (`dropout`; see profiles.clv.dropout_identification).

    Raises InputError for a missing file or column, or a row the summary cannot read."""
    columns = [request.customer_col, request.date_col] + ([request.value_col] if request.value_col else [])
    table = read_transactions(request.transactions, columns)
    summary = summarize_table(
        table,
        customer_col=request.customer_col,
        date_col=request.date_col,
        value_col=request.value_col,
        observation_end=request.observation_end,
        time_unit=request.time_unit,
    )
    purchases = fit_bgnbd(summary.frequency, summary.recency, summary.T)
    dropout = dropout_identification(
        purchases, summary.frequency, summary.recency, summary.T, time_unit=summary.time_unit
    )
    spend = fit_gamma_gamma(summary.frequency, summary.monetary_value) if request.value_col else None
    return ClvFit(
        customers=len(summary),
        repeat_customers=int((summary.frequency > 0).sum()),
        observation_end=str(summary.observation_end),
        time_unit=summary.time_unit,
        bgnbd={
            "r": purchases.r,
            "alpha": purchases.alpha,
            "a": purchases.a,
            "b": purchases.b,
            "log_likelihood": purchases.log_likelihood,
            "converged": purchases.converged,
        },
        gamma_gamma=None
        if spend is None
        else {
            "p": spend.p,
            "q": spend.q,
            "v": spend.v,
            "log_likelihood": spend.log_likelihood,
            "customers": spend.n_customers,
            "converged": spend.converged,
        },
        dropout=dropout.to_dict(),
    )


def read_transactions(file: Path, columns: list[str]) -> object:
    """The named columns of a CSV (read as text, so the summary can name a bad row) or Parquet file."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    from omniweave.errors import InputError

    if not file.is_file():
        raise InputError(f"cannot read {str(file)!r}: no such file; expected a CSV or Parquet file")
    wanted = list(dict.fromkeys(columns))
    kind = "Parquet" if file.suffix.lower() in (".parquet", ".pq") else "CSV"
    try:
        if kind == "Parquet":
            present = pq.read_schema(file).names
        else:
            with pa_csv.open_csv(
                file, convert_options=pa_csv.ConvertOptions(column_types={name: pa.string() for name in wanted})
            ) as reader:
                present = reader.schema.names
        for name in wanted:
            if name not in present:
                raise InputError(f"missing column {name!r}; got columns {present}", field=name)
        if kind == "Parquet":
            return pq.read_table(file, columns=wanted)
        return pa_csv.read_csv(
            file,
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in wanted}, include_columns=wanted, strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        raise InputError(f"cannot read {str(file)!r} as {kind}: {exc}") from None
