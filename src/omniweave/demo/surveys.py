"""The demo world's NPS survey: the day after a store visit that left a receipt with a known customer, the
retailer e-mails "how likely are you to recommend us?" (0-10); some customers answer.

`write_surveys` reads the merged `offline/till.csv` and writes `offline/surveys.csv` (the `surveys` importer's
columns), drawn from its own seeded generator so that the rest of the world is unchanged. Each store has a
service level (its customers' mean score); an answer is that level plus noise, clipped to 0-10. Answers that
would arrive after the world's last day are not written (the survey tool has not exported them yet).
"""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

from omniweave.demo.sinks import OFFLINE_COLUMNS

RESPONSE_RATE = 0.2
"""Share of invited customers who answer."""
QUESTION = "How likely are you to recommend us to a friend or colleague?"
SURVEY_ID = "nps-after-visit"


def write_surveys(folder: Path, seed: int, end_date: date) -> int:
    """Write `offline/surveys.csv` from `offline/till.csv` in the world folder; returns the number of answers."""
    rng = np.random.default_rng([seed, 22_01])  # a stream of its own: the other files do not change
    levels: dict[str, float] = {}
    last = datetime.combine(end_date + timedelta(days=1), datetime.min.time(), UTC)
    seen: set[str] = set()
    rows = []
    with open(folder / "offline" / "till.csv", newline="", encoding="utf-8") as fh:
        for line in csv.DictReader(fh):
            receipt = line["transaction_id"]
            if receipt in seen:
                continue
            seen.add(receipt)
            if not (line["customer_number"] or line["loyalty_card"] or line["email"]):
                continue  # nobody to send the survey to
            store = line["store_id"]
            if store not in levels:
                levels[store] = float(rng.uniform(6.0, 9.2))
            answers, minutes, noise = rng.random(), rng.uniform(60, 36 * 60), rng.normal(0.0, 1.8)
            if answers >= RESPONSE_RATE:
                continue
            at = datetime.fromisoformat(line["timestamp"]) + timedelta(minutes=float(minutes))
            if at >= last:
                continue
            score = int(np.clip(round(levels[store] + noise), 0, 10))
            rows.append(
                {
                    "response_id": f"R-{receipt}",
                    "timestamp": at.isoformat(timespec="seconds"),
                    "score": score,
                    "channel": "email",
                    "customer_number": line["customer_number"],
                    "email": line["email"],
                    "loyalty_card": line["loyalty_card"],
                    "survey_id": SURVEY_ID,
                    "question": QUESTION,
                    "store_id": store,
                    "order_id": receipt,
                }
            )
    with open(folder / "offline" / "surveys.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, OFFLINE_COLUMNS["surveys"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)
