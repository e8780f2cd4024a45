"""`omniweave identity explain` and `omniweave identity split` on a small demo world, run as a subprocess."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from omniweave.identity.service.resolve import load_stitcher
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from tests.conftest import omniweave_cmd, shared_demo_world


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = shared_demo_world(tmp_path_factory, "identity-cli", customers=150, days=10, seed=5, bulk=True)
    return home


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMNIWEAVE_HOME": str(home), "COLUMNS": "400"}
    return subprocess.run(omniweave_cmd(*args), check=False, env=env, capture_output=True, text=True)


def _person_with_email_and_user(home: Path) -> tuple[str, dict[str, list[str]]]:
    stitcher = load_stitcher(Runtime(Settings(home=str(home))))
    return next(
        (p, ids)
        for p, ids in sorted(stitcher.persons().items())
        if ids.get("user_id") and len(ids.get("email", [])) >= 1 and len(ids.get("anonymous_id", [])) >= 1
    )


def test_explain_two_identifiers_prints_the_chain(home: Path) -> None:
    run(home, "resolve")
    _, ids = _person_with_email_and_user(home)
    user, email = f"user_id:{ids['user_id'][0]}", f"email:{ids['email'][0]}"
    # the e-mail as a user might type it: normalised like resolve does
    out = run(home, "identity", "explain", user, f"email:  {ids['email'][0].upper()} ")
    assert out.returncode == 0, out.stderr
    assert "link(s) from" in out.stdout and user in out.stdout and email in out.stdout
    stitcher = load_stitcher(Runtime(Settings(home=str(home))))
    chain = stitcher.explain(("user_id", ids["user_id"][0]), ("email", ids["email"][0]))
    assert all(f"event {link.message_id}" in out.stdout for link in chain)
    assert "rule: same event" in out.stdout


def test_explain_one_identifier_prints_the_person_and_its_links(home: Path) -> None:
    run(home, "resolve")
    person, ids = _person_with_email_and_user(home)
    out = run(home, "identity", "explain", f"email:{ids['email'][0]}")
    assert out.returncode == 0, out.stderr
    assert f"is person {person}" in out.stdout
    assert ids["user_id"][0] in out.stdout and ids["anonymous_id"][0] in out.stdout
    assert "links that built the person" in out.stdout and "same event" in out.stdout


def test_split_sticks_across_resolve(home: Path) -> None:
    run(home, "resolve")
    person, ids = _person_with_email_and_user(home)
    email = ("email", ids["email"][0])
    user = ("user_id", ids["user_id"][0])
    out = run(home, "identity", "split", person, "--identifier", f"email:{email[1]}")
    assert out.returncode == 0, out.stderr
    assert "split email:" in out.stdout and "kept:" in out.stdout and "split off:" in out.stdout
    runtime = Runtime(Settings(home=str(home)))
    identities = runtime.warehouse().sql("SELECT kind, value, person_id FROM identities").to_pylist()
    by_ident = {(r["kind"], r["value"]): r["person_id"] for r in identities}
    assert by_ident[email] != by_ident[user]
    again = run(home, "resolve")
    assert again.returncode == 0, again.stderr
    stitcher = load_stitcher(Runtime(Settings(home=str(home))))
    assert stitcher.person_of(email) != stitcher.person_of(user)
    identities = (
        Runtime(Settings(home=str(home))).warehouse().sql("SELECT kind, value, person_id FROM identities").to_pylist()
    )
    by_ident = {(r["kind"], r["value"]): r["person_id"] for r in identities}
    assert by_ident[email] != by_ident[user]
    # explain now says they are different persons
    out = run(home, "identity", "explain", f"email:{email[1]}", f"user_id:{user[1]}")
    assert out.returncode == 2 and "different persons" in out.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("identity", "explain", "ann@example.com"), "expected kind:value"),
        (("identity", "explain", "colour:blue"), "unknown kind 'colour'"),
        (("identity", "explain", "email:not-an-email"), "not an e-mail address"),
        (
            ("identity", "explain", "email:nobody-here@example.org"),
            "email:n***@e***.org (ref 457b4a4c) is not in the identity graph",  # masked: events/masking.py
        ),
        (
            ("identity", "split", "Pnosuchperson000", "--identifier", "email:a@example.com"),
            "no person 'Pnosuchperson000'",
        ),
    ],
)
def test_bad_input_is_a_clear_error(home: Path, args: tuple[str, ...], expected: str) -> None:
    run(home, "resolve")
    out = run(home, *args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert expected in " ".join(out.stderr.split())


def test_resolve_options_are_checked(home: Path) -> None:
    out = run(home, "resolve", "--threshold", "1.5")
    assert out.returncode == 2 and "threshold" in out.stderr
    out = run(home, "resolve", "--engine", "oracle")
    assert out.returncode != 0 and "unknown warehouse engine 'oracle'" in " ".join((out.stdout + out.stderr).split())
    out = run(home, "resolve", "--no-probabilistic")
    assert out.returncode == 0 and "probabilistic links" in out.stdout
