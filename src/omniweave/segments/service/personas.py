"""Personas suggested from the `profiles` dataset, and written as segment files on request.

`suggest_from_profiles` reads the profiles, clusters them (`segments.personas`, docs/personas.md) and
reports each persona with how well its rule matches it: how many persons the rule selects over the
same profiles, and how many of those are in the cluster (computed here on the Arrow table, not
through the segment engine). With `write`, each persona becomes a file `segments/<id>.yaml` in the
format of docs/segments.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from omniweave.errors import InputError
from omniweave.runtime import Runtime
from omniweave.segments.personas import Persona, condition_mask, suggest_personas
from omniweave.segments.service.evaluate import segments_folder

PROFILE_COLUMNS = (
    "person_id",
    "recency_days",
    "orders",
    "online_orders",
    "store_orders",
    "total_revenue",
    "average_order_value",
    "clv_12m",
    "consent_email",
    "preferred_channel",
    "engagement_by_channel",
    "favourite_categories",
    "age",
    "gender",
)
"""The profile columns the clustering, the descriptions and the rules read (those present)."""
SUGGESTED_MARK = "# Suggested by `omniweave personas suggest`"
"""First line of every file written here: such a file is replaced by the next suggestion of the same id."""


@dataclass(frozen=True)
class SuggestedPersona:
    """A persona and its rule checked on the profiles: `rule_selects` persons match the rule,
    `overlap` of them are in the cluster (`persona.size` persons)."""

    persona: Persona
    rule_selects: int
    overlap: int
    path: str | None = None

    @property
    def precision(self) -> float:
        """Share of the rule's selection that is in the cluster."""
        return self.overlap / self.rule_selects if self.rule_selects else 0.0

    @property
    def recall(self) -> float:
        """Share of the cluster that the rule selects."""
        return self.overlap / self.persona.size if self.persona.size else 0.0


@dataclass(frozen=True)
class PersonaSuggestions:
    """Everything `omniweave personas suggest` prints."""

    profiles: int
    k: int
    silhouettes: dict[int, float]
    personas: list[SuggestedPersona]
    folder: str | None = None
    features: tuple[str, ...] = field(default=())


def read_profile_columns(runtime: Runtime, sample: int | None = None) -> dict[str, list[Any]]:
    """The profile columns of PROFILE_COLUMNS that exist, as Python lists; InputError without profiles.

    `sample`: at most this many profiles, the same ones on every call over the same profiles (those whose
    person id hashes lowest): the dashboard's plan suggests personas from 100,000 of a million profiles."""
    if not runtime.log.has_data("profiles"):
        raise InputError(
            "no profiles yet: run `omniweave profiles build` (or `omniweave demo`) first", field="profiles"
        )
    table = runtime.warehouse().table("profiles")
    present = [c for c in PROFILE_COLUMNS if c in table.columns]
    chosen = table.select(present)
    if sample is not None and "person_id" in present and int(table.count().execute()) > sample:
        chosen = chosen.order_by([chosen.person_id.hash(), "person_id"]).limit(sample)
    data = chosen.order_by("person_id").to_pyarrow() if "person_id" in present else chosen.to_pyarrow()
    return data.to_pydict()


def persona_document(persona: Persona) -> dict[str, Any]:
    """The segment file's content for a persona (docs/segments.md)."""
    return {
        "id": persona.id,
        "name": persona.name,
        "description": persona.description,
        "persona": {"target_kpis": list(persona.target_kpis), "preferred_channels": list(persona.preferred_channels)},
        "where": persona.where,
    }


def _existing_ids(folder: Path) -> dict[str, Path]:
    """Ids of the segment files in `folder` that were not written by this module."""
    import tomllib

    import yaml

    ids: dict[str, Path] = {}
    if not folder.is_dir():
        return ids
    for path in sorted(folder.iterdir()):
        if path.suffix not in (".yaml", ".yml", ".toml"):
            continue
        text = path.read_text(encoding="utf-8")
        if text.startswith(SUGGESTED_MARK):
            continue
        try:
            document = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError):
            document = None
        seg_id = document.get("id") if isinstance(document, dict) else None
        ids[str(seg_id or path.stem)] = path
    return ids


def write_personas(personas: list[Persona], folder: Path) -> list[Path]:
    """Write each persona as `<folder>/<id>.yaml`; a file written by an earlier suggestion is
    replaced, any other segment with the same id is left alone (the persona gets `_2`, `_3`...)."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    taken = _existing_ids(folder)
    paths = []
    for persona in personas:
        document = persona_document(persona)
        base, i = persona.id, 2
        while (
            document["id"] in taken
            or (folder / f"{document['id']}.yml").exists()
            or (folder / f"{document['id']}.toml").exists()
        ):
            document["id"], i = f"{base}_{i}", i + 1
        taken[document["id"]] = folder / f"{document['id']}.yaml"
        path = folder / f"{document['id']}.yaml"
        body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
        tmp = path.with_suffix(".yaml.tmp")
        tmp.write_text(f"{SUGGESTED_MARK}; edit freely, then remove this line to keep it.\n{body}", encoding="utf-8")
        tmp.replace(path)
        paths.append(path)
    return paths


def suggest_from_profiles(
    runtime: Runtime,
    *,
    k: int | None = None,
    seed: int = 0,
    write: bool = False,
    folder: Path | None = None,
    sample: int | None = None,
) -> PersonaSuggestions:
    """Personas suggested from the `profiles` dataset: k given, or chosen in 3..8 by silhouette;
    each with its rule checked on the profiles; written as segment files when `write` is true. `sample`: from
    at most that many profiles (`read_profile_columns`)."""
    columns = read_profile_columns(runtime, sample)
    suggestion = suggest_personas(columns, k=k, seed=seed)
    reports = []
    for j, persona in enumerate(suggestion.personas):
        in_cluster = suggestion.labels == j
        selected = condition_mask(persona.where, columns)
        reports.append(SuggestedPersona(persona, int(selected.sum()), int(np.sum(selected & in_cluster))))
    written_folder = None
    if write:
        target = folder or segments_folder(runtime.settings)
        paths = write_personas([r.persona for r in reports], target)
        reports = [
            SuggestedPersona(r.persona, r.rule_selects, r.overlap, str(p)) for r, p in zip(reports, paths, strict=True)
        ]
        written_folder = str(target)
    return PersonaSuggestions(
        len(suggestion.labels), suggestion.k, suggestion.silhouettes, reports, written_folder, suggestion.features
    )
