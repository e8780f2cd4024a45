"""A message rendered once and bound to each person's values: the journey engine's e-mails and pushes.

Rendering an e-mail for one person (its templates, the layout, the CSS put back, the text part) cost about a
third of a journey send's CPU (bench/journeys.py, profiled), although most e-mails differ only where a first
name stands. `BoundRenditions.get` renders a message once per (message, channel, what the person's values
are like) with stand-ins for the person's values, and gives each person that rendition with their values
written where the stand-ins came out.

That is the same rendition, byte for byte, only where nothing between the template and the output treats a
value by what it says. So a message is bound only when all of this holds, and is rendered in full otherwise:

- its templates read the person only as `{{ person.X }}` or `{{ person.X or 'text' }}` (no filter, test,
  comparison, subscript or `person` as a whole: `simple_fields`) and draw nothing at random;
- the channel is e-mail or push (an SMS's `STOP` line and brand prefix look at the text);
- each bound value is a non-empty string of letters, digits, `.` and `-` (`bindable`): escaping HTML,
  css-inline's writing of texts and attributes, the body's markup (`**bold**`, `[link](url)`, paragraphs) and
  `.strip()` leave such a text as it is, and its truth is that of any stand-in; any other value (missing,
  empty, a number, a list, `O'Brien`, `Mary Ann`) is part of the key and rendered as it is;
- the rendition made with one set of stand-ins, its stand-ins swapped for a second set of other lengths and
  letters, equals the rendition made with the second set, and has no problems (checked once per key).

`recommendations` (the person's `recommended_products`) is part of the key as it is. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields, is_dataclass, replace
from typing import Any

import orjson

from omniweave.activate.content.model import MessageDef, channel_name
from omniweave.activate.content.render import Rendition

BOUND_CHANNELS = frozenset({"email", "push"})

_READ = re.compile(r"\{\{-?\s*person\.([A-Za-z_][A-Za-z0-9_]*)\s*(?:or\s+(?:'[^'{}\\]*'|\"[^\"{}\\]*\")\s*)?-?\}\}")
_PERSON = re.compile(r"\bperson\b")
_STAND_IN = "Zq7Xw"  # a bound value holding this is not bound (it could be taken for a stand-in)


def _texts(value: Any) -> Iterable[str]:
    """Every string in a message (its fields, overrides, offer and call to action), recursively."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _texts(k)
            yield from _texts(v)
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            yield from _texts(v)
    elif is_dataclass(value) and not isinstance(value, type):
        for f in fields(value):
            yield from _texts(getattr(value, f.name))


def simple_fields(message: MessageDef) -> frozenset[str] | None:
    """The person fields `message`'s templates read, when every read is `{{ person.X }}` or
    `{{ person.X or 'text' }}`; None when any template reads the person in another way."""
    found: set[str] = set()
    for text in _texts(replace(message, description="", source="", name="", campaign="")):
        if "random" in text or "lipsum" in text:  # drawn per rendition: never made once for many
            return None
        if "person" not in text:
            continue
        reads = list(_READ.finditer(text))
        if len(_PERSON.findall(text)) != len(reads):
            return None
        found.update(m.group(1) for m in reads)
    return frozenset(found)


def bindable(value: Any) -> bool:
    """Whether a person's value can stand where a stand-in came out (see the module docstring)."""
    return (
        isinstance(value, str)
        and value != ""
        and _STAND_IN not in value
        and all((ch.isalnum() and ord(ch) < 0x2000) or ch in ".-" for ch in value)
    )


_FIRST = re.compile(_STAND_IN + r"(\d+)Kj")


def _stand_ins(slots: tuple[str, ...], second: bool) -> dict[str, str]:
    """Stand-ins for the bound values: two sets of other lengths and letters, each bindable itself."""
    if second:
        return {f: f"{_STAND_IN}r{i}Mhq4Tvkp" for i, f in enumerate(slots)}
    return {f: f"{_STAND_IN}{i}Kj" for i, f in enumerate(slots)}


def _swap(value: Any, marks: re.Pattern[str], values: list[str]) -> Any:
    """`value` (a rendition's content) with every stand-in `marks` finds replaced by its value, in one pass (a
    value written in is not read again)."""
    if isinstance(value, str):
        return marks.sub(lambda m: values[int(m.group(1))], value) if _STAND_IN in value else value
    if isinstance(value, dict):
        return {k: _swap(v, marks, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_swap(v, marks, values) for v in value]
    if isinstance(value, tuple):
        return tuple(_swap(v, marks, values) for v in value)
    return value


def _plain(value: Any) -> Any:
    """`value` when it is made of JSON's own types only (a key must not take a date for its ISO text), else a
    TypeError."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if type(value) in (list, tuple):
        return [_plain(v) for v in value]
    if type(value) is dict:
        return {str(k): _plain(v) for k, v in value.items()}
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _count(value: Any, text: str) -> int:
    """How often `text` occurs in a rendition's content."""
    if isinstance(value, str):
        return value.count(text)
    if isinstance(value, dict):
        return sum(_count(v, text) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_count(v, text) for v in value)
    return 0


class BoundRenditions:
    """Renditions made with stand-ins, by (message, channel, the person's values that are not bound), and
    bound to a person's values on `get`. One per engine: the messages and the brand must not change under it."""

    def __init__(self, limit: int = 4096):
        self.limit = limit
        self._fields: dict[str, frozenset[str] | None] = {}
        self._made: dict[bytes, Rendition | None] = {}

    def get(
        self,
        message: MessageDef,
        channel: str,
        person: Mapping[str, Any],
        make: Callable[[Mapping[str, Any]], Rendition],
    ) -> Rendition | None:
        """`person`'s rendition of `message` on `channel`, bound from one made by `make` (the full render of a
        person's values); None when it cannot be bound (the caller renders it in full)."""
        if channel_name(channel) not in BOUND_CHANNELS:
            return None
        if message.name not in self._fields:
            self._fields[message.name] = simple_fields(message)
        read = self._fields[message.name]
        if not read:
            return None
        slots = tuple(sorted(f for f in read if bindable(person.get(f))))
        if not slots:
            return None
        try:
            kept = [[f, f in person, _plain(person.get(f))] for f in sorted(read) if f not in slots]
            recommendations = _plain(person.get("recommended_products"))
        except TypeError:
            return None
        key = orjson.dumps([message.name, channel, slots, kept, recommendations])
        if key not in self._made:
            if len(self._made) >= self.limit:
                self._made.clear()
            self._made[key] = self._make(person, slots, make)
        made = self._made[key]
        if made is None:
            return None
        return replace(made, content=_swap(made.content, _FIRST, [str(person[f]) for f in slots]))

    @staticmethod
    def _make(
        person: Mapping[str, Any], slots: tuple[str, ...], make: Callable[[Mapping[str, Any]], Rendition]
    ) -> Rendition | None:
        """The rendition with the first stand-ins, if the second set gives the same one and the stand-ins' prefix
        comes out only in stand-ins (else None: not bound)."""
        first, second = _stand_ins(slots, False), _stand_ins(slots, True)
        one = make({**person, **first})
        two = make({**person, **second})
        if one.problems or two.problems:
            return None
        if _count(one.content, _STAND_IN) != sum(_count(one.content, first[f]) for f in slots):
            return None
        swapped = _swap(one.content, _FIRST, [second[f] for f in slots])
        if replace(one, content=swapped) != two:
            return None
        return one
