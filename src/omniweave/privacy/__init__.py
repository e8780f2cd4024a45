"""Privacy: consent per purpose, data-subject requests that reach everywhere, PII hygiene.

    consent.py    consent statements from events, imports, channels and the API; the latest per purpose
    subjects.py   a person's identifiers as the needles a deletion searches for, and their digests
    masking.py    e-mail, phone and name masked for logs and error messages
    requests.py   the request kinds, statuses and receipts (frozen results)
    service/      consent history, export / delete / suppress / unsuppress / retention jobs

The collector's side (refusing a suppressed identifier, collection rules) lives in
`storage/ops/tables/privacy.py`, below collect, as the dependency direction asks.
"""
