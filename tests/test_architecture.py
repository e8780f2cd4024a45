"""The house of ARCHITECTURE.md: every stage is one folder, and the old layer folders are gone.

The dependency rules themselves are import-linter contracts (`pyproject.toml`, run by
`scripts/test`); this test keeps the layout they talk about.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "omniweave"
STAGES = (
    "events",
    "storage",
    "collect",
    "identity",
    "profiles",
    "segments",
    "channels",
    "activate",
    "measure",
    "shells",
    "demo",
)


def test_one_folder_per_stage():
    for stage in STAGES:
        assert (PACKAGE / stage / "__init__.py").is_file(), stage
    for old in ("core", "adapters", "service", "importers", "segments_library"):
        assert not (PACKAGE / old).exists(), f"{old}/ is a layer folder of the old house"


def test_tests_mirror_the_package():
    tests = Path(__file__).resolve().parent
    for stage in STAGES:
        if stage != "shells" and any((PACKAGE / stage).rglob("*.py")):
            assert (tests / stage).is_dir(), f"tests/{stage}/ mirrors src/omniweave/{stage}/"
