"""The fast rendering path (constant templates rendered once, the e-mail's CSS inlined once per markup) gives
the same bytes as rendering everything every time, for every shipped message on every channel it has."""

from __future__ import annotations

from typing import Any

import css_inline
import pytest

from omniweave.activate.content import render as R
from omniweave.activate.content.model import BrandKit, parse_brand, parse_message
from omniweave.activate.content.render import inline_css, render, template_variables
from omniweave.activate.service.messages import builtin_messages

SHIPPED_BRAND = parse_brand(
    {
        "name": "Shop.example",
        "colours": {"primary": "#1F6F5C", "accent": "#F2A541", "text": "#222222", "background": "#F4F4F2"},
        "logo": "https://shop.example/static/logo.png",
        "footer": "Shop.example Ltd, 1 High Street, London N1 1AA",
        "legal": ["You get this because you signed up at Shop.example or in one of our stores."],
        "sms_prefix": "Shop.example",
    }
)
ODD_BRAND = BrandKit(name="Tom & Jerry's <Shop>", footer='"Quotes" & \u00a0spaces', legal=("a < b > c", "ünï 😀"))

PERSONS: list[dict[str, Any]] = [
    {"person_id": "P1", "first_name": "Ann", "recommended_products": ["SKU-1", "SKU-2"]},
    {"person_id": "P2", "first_name": "Zoë", "recommended_products": []},
    {"person_id": "P3"},  # no first name: the templates' fallbacks
    {"person_id": "P4", "first_name": "Tom & <Jerry> \"q\" 'a'", "recommended_products": ["<b>x</b>", "a&b"]},
    {"person_id": "P5", "first_name": "\u00a0nbsp\u00a0 &amp; &#39; &lt;", "recommended_products": ["\u2028", "😀"]},
    {"person_id": "P6", "first_name": "Line\nbreak\n\nparagraph **bold** [l](https://x.example/?a=1&b=2)"},
    {"person_id": "P7", "first_name": "  ", "recommended_products": ["   "]},
    {"person_id": "P8", "first_name": "\ue000 0 \ue001 mark", "recommended_products": ["\r\n", "\x00"]},
]


def _variables(person: dict[str, Any], brand: BrandKit, message: Any, code: str | None) -> dict[str, Any]:
    return template_variables(person, brand, message, offer_code=code)


@pytest.mark.parametrize("brand", [SHIPPED_BRAND, ODD_BRAND], ids=["shipped", "odd"])
@pytest.mark.parametrize("name", sorted(builtin_messages()))
def test_fast_render_is_byte_identical_on_shipped_messages(name: str, brand: BrandKit) -> None:
    message = builtin_messages()[name]
    compared = 0
    for round_ in range(2):  # the second round reads the memo and the inlined markup the first one left
        for index, person in enumerate(PERSONS):
            code = None if index % 3 == 0 else f"CODE-{index}&<{round_}>"
            for channel in message.channels:
                address = ("Ann Adams", "1 High St", "London") if channel == "print" else ()
                slow = render(
                    message, brand, channel, _variables(person, brand, message, code), address=address, fast=False
                )
                fast = render(message, brand, channel, _variables(person, brand, message, code), address=address)
                assert fast == slow, (name, channel, person)
                compared += 1
    assert compared == 2 * len(PERSONS) * len(message.channels)


def test_inline_css_matches_css_inline_on_odd_markup() -> None:
    docs = [
        "<html><head><style>p { color: red; } td > p { margin: 0; }</style></head>"
        "<body><table><tr><td><p class='x'>A &amp; B</p></td></tr></table></body></html>",
        "<html><head><title>T &#39;s</title><style>.a{font-weight:bold}</style></head><body>"
        "<table>stray text<tr><td class='a'>in &lt;cell&gt;</td></tr></table> tail &nbsp; x</body></html>",
        "<p>no style at all &#x27; &quot;</p>",
        "<html><body><!-- a comment with <b>tags</b> --><span class=a>x</span></body></html>",
        "text \ue000 with a mark character<style>span{color:blue}</style><span>y</span>",
        "<div>carriage\r\nreturn</div><style>div{color:green}</style>",
    ]
    for doc in docs:
        assert inline_css(doc) == css_inline.inline(doc), doc
        assert inline_css(doc) == css_inline.inline(doc), doc  # from the kept markup


def test_a_random_or_personal_template_is_rendered_every_time() -> None:
    message = parse_message(
        {
            "name": "memo_check",
            "subject": "{{ ['a', 'b', 'c', 'd', 'e', 'f'] | random }}",
            "headline": "{{ offer.code }}",
            "body": "Hi {{ person.first_name }}",
            "preheader": "{{ brand.name }} {{ channel }}",
        }
    )
    subjects, headlines = set(), set()
    for i in range(40):
        out = render(
            message, SHIPPED_BRAND, "email", _variables({"first_name": f"N{i}"}, SHIPPED_BRAND, message, f"C{i}")
        )
        subjects.add(out.content["subject"])
        headlines.add(out.content["html"].split("<h1", 1)[1].split("</h1>", 1)[0])
        assert f"Hi N{i}" in out.content["text"]
        assert out.content["preheader"] == "Shop.example email"
    assert len(subjects) > 1  # drawn each time, not memoised
    assert len(headlines) == 40  # the personal code: never shared
    assert R._constant_roots("{{ brand.name }} {{ channel }}") == frozenset({"brand", "channel"})
    assert R._constant_roots("{{ person.first_name }}") is None
    assert R._constant_roots("{{ offer.code }}") is None
