"""The customers of one block: who they are, how they behave, and every identifier they own.

Behaviour comes from five personas (digital natives, store loyalists, omnichannel families,
bargain hunters, occasional shoppers) with person-level noise around each persona's means.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import numpy as np

from omniweave.demo import world as w
from omniweave.demo.identity import (
    CUSTOMER_NUMBER_VARIANTS,
    EMAIL_VARIANTS,
    IdentityLedger,
    hex_strings,
    phone_variant,
    uuid_strings,
)

if TYPE_CHECKING:
    from _csv import Writer as CsvWriter  # what csv.writer returns

PERSONAS = ("digital", "store_loyalist", "omnichannel", "bargain_hunter", "occasional")
_P = np.array(
    [
        # share, base_online, base_store, browse, p_account, p_member, p_app, age, price_sens, p_email, p_phone
        [0.25, 0.0100, 0.0025, 0.10, 0.85, 0.25, 0.55, 31, 0.45, 0.97, 0.85],
        [0.25, 0.0012, 0.0150, 0.015, 0.25, 0.80, 0.10, 55, 0.35, 0.60, 0.90],
        [0.20, 0.0080, 0.0100, 0.07, 0.80, 0.70, 0.50, 40, 0.40, 0.95, 0.92],
        [0.15, 0.0050, 0.0070, 0.06, 0.60, 0.55, 0.30, 38, 0.85, 0.90, 0.85],
        [0.15, 0.0015, 0.0025, 0.015, 0.30, 0.20, 0.05, 45, 0.50, 0.70, 0.70],
    ]
)
CHANNEL_PREFS = ("email", "sms", "whatsapp", "push", "direct_mail")
DEVICE_PREFS = ("desktop", "mobile_web", "app", "store")
PROMO_RESPONSE_COLUMNS = tuple(f"resp_{p}" for p in w.PROMO_TYPES)


@dataclass
class People:
    """Columns for the customers of one block (position i is one person)."""

    pid: np.ndarray
    person_id: list[str]
    persona: np.ndarray
    gender: np.ndarray  # 0 female, 1 male, 2 not given
    first: list[str]
    last: list[str]
    birth: np.ndarray  # datetime64[D]
    age: np.ndarray
    city: np.ndarray  # index into world.CITIES
    postcode: list[str]
    address: list[str]
    home_store: np.ndarray  # index into the stores, -1 for customers abroad
    email: list[str]
    has_email: np.ndarray
    phone_cc: list[str]
    phone_nsn: list[str]
    phone_split: np.ndarray
    is_mobile: np.ndarray
    has_phone: np.ndarray
    customer_number: list[str]
    has_account: np.ndarray
    user_id: list[str]
    is_member: np.ndarray
    card: list[str]
    card2: list[str]
    has_card2: np.ndarray
    member_since: np.ndarray  # simulation day of sign-up (negative: before the period)
    n_browsers: np.ndarray
    browser_mobile: np.ndarray  # [n, 3]
    web_anon: list[list[str]]
    n_apps: np.ndarray
    app_ios: np.ndarray  # [n, 2]
    device_id: list[list[str]]
    app_anon: list[list[str]]
    wifi_mac: list[str]
    msg_anon: list[list[str]]  # recipient ids at the SMS, WhatsApp and e-mail providers
    email_opt_in: np.ndarray
    sms_opt_in: np.ndarray
    whatsapp_opt_in: np.ndarray
    push_opt_in: np.ndarray
    pref_channel: np.ndarray
    pref_device: np.ndarray
    affinity: np.ndarray  # [n, categories], rows sum to 1
    price_sensitivity: np.ndarray
    response: np.ndarray  # [n, 4] multipliers (mean 1) for coupon, discount, free_shipping, event
    base_online: np.ndarray
    base_store: np.ndarray
    browse_rate: np.ndarray
    active_hour: np.ndarray
    ip: list[str]

    def __len__(self) -> int:
        return len(self.pid)


def build_people(
    rng: np.random.Generator, start_pid: int, n: int, stores: list[w.Store], days: int, start: date
) -> People:
    """`n` customers numbered from `start_pid`, with attributes, preferences and identifiers."""
    pid = np.arange(start_pid, start_pid + n)
    persona = rng.choice(len(PERSONAS), n, p=_P[:, 0] / _P[:, 0].sum())
    P = _P[persona]
    gender = rng.choice(3, n, p=[0.52, 0.46, 0.02])
    age = np.clip(rng.normal(P[:, 7], 11), 18, 88).astype(int)
    birth = np.datetime64(start) - (age * 365.25 + rng.integers(0, 365, n)).astype("timedelta64[D]")
    city_w = np.array([c.weight for c in w.CITIES])
    city = rng.choice(len(w.CITIES), n, p=city_w / city_w.sum())
    country = [w.CITIES[c].country for c in city.tolist()]
    abroad = np.array([c != "GB" for c in country])
    # names
    fi = rng.integers(0, 10_000, n)
    name_lists = (w.FIRST_NAMES_F, w.FIRST_NAMES_M, w.FIRST_NAMES_F + w.FIRST_NAMES_M)
    first = [name_lists[g][i % len(name_lists[g])] for g, i in zip(gender.tolist(), fi.tolist(), strict=False)]
    last = [w.LAST_NAMES[i] for i in rng.integers(0, len(w.LAST_NAMES), n).tolist()]
    # addresses
    out_i, digit, letters = rng.integers(0, 100, n), rng.integers(1, 10, n), rng.integers(0, 26, (n, 2))
    house, street_i = rng.integers(1, 240, n), rng.integers(0, 100, n)
    postcode, address = [], []
    for k in range(n):
        c = w.CITIES[city[k]]
        outward = c.outward[out_i[k] % len(c.outward)]
        l1, l2 = chr(65 + letters[k, 0]), chr(65 + letters[k, 1])
        if c.country == "IE":
            postcode.append(f"{outward} {l1}{digit[k]}{l2}{(house[k] * 7) % 10}")
        elif c.country == "NL":
            postcode.append(f"{outward} {l1}{l2}")
        else:
            postcode.append(f"{outward} {digit[k]}{l1}{l2}")
        address.append(f"{house[k]} {c.streets[street_i[k] % len(c.streets)]}")
    # home store: a store in the customer's city (London has several)
    by_city: dict[str, list[int]] = {}
    for si, s in enumerate(stores):
        by_city.setdefault(s.city, []).append(si)
    pick = rng.integers(0, 1000, n)
    home_store = np.array(
        [
            by_city[w.CITIES[c].name][p % len(by_city[w.CITIES[c].name])] if w.CITIES[c].name in by_city else -1
            for c, p in zip(city.tolist(), pick.tolist(), strict=False)
        ]
    )
    # e-mail and phone
    has_email = rng.random(n) < P[:, 9]
    doms = {cc: (np.array([d for d, _ in v]), np.array([p for _, p in v])) for cc, v in w.EMAIL_DOMAINS.items()}
    style = rng.integers(0, 4, n)
    dom_u = rng.random(n)
    email = []
    for k in range(n):
        names, probs = doms[country[k]]
        domain = names[min(int(np.searchsorted(np.cumsum(probs), dom_u[k] * probs.sum())), len(names) - 1)]
        f_, l_ = _ascii(first[k]), _ascii(last[k])
        local = (f"{f_}.{l_}", f"{f_[0]}{l_}", f"{f_}{l_}", f"{l_}.{f_}")[style[k]]
        email.append(f"{local}{pid[k]}@{domain}" if has_email[k] else "")
    has_phone = rng.random(n) < P[:, 10]
    is_mobile = rng.random(n) < 0.88
    digits = rng.integers(0, 10**8, n)
    phone_cc, phone_nsn, phone_split = [], [], np.zeros(n, int)
    for k in range(n):
        c = w.CITIES[city[k]]
        cc = w.COUNTRY_CODES[c.country]
        if is_mobile[k]:
            pre = w.MOBILE_PREFIX[c.country]
            nsn = {
                "GB": f"7{700 + (pid[k] % 300):03d}{digits[k] % 10**6:06d}",
                "IE": f"8{3 + pid[k] % 7}{digits[k] % 10**7:07d}",
                "NL": f"6{digits[k]:08d}",
            }[c.country]
            split = {"GB": 4, "IE": 2, "NL": 1}[c.country]
            assert nsn.startswith(pre)
        else:
            rest = 10 - len(c.area_code) if c.country == "GB" else 7
            nsn = f"{c.area_code}{digits[k] % 10**rest:0{rest}d}"
            split = len(c.area_code)
        phone_cc.append(cc)
        phone_nsn.append(nsn)
        phone_split[k] = split
    customer_number = [f"C{10_000_000 + p}" for p in pid.tolist()]
    has_account = (rng.random(n) < P[:, 4]) & has_email
    user_id = [f"usr_{h}" for h in hex_strings(rng, n, 14)]
    is_member = rng.random(n) < P[:, 5] * np.where(abroad, 0.1, 1.0)
    card = [f"{6_300_000_000 + (p * 7919 + 12345) % 100_000_000}" for p in pid.tolist()]
    has_card2 = is_member & (rng.random(n) < 0.05)
    card2 = [f"{6_400_000_000 + (p * 104_729 + 777) % 100_000_000}" for p in pid.tolist()]
    member_since = np.where(rng.random(n) < 0.9, -rng.integers(1, 1500, n), rng.integers(0, max(days, 1), n))
    # devices
    online_share = np.clip(P[:, 3] * 8, 0.2, 1.0)
    n_browsers = np.where(rng.random(n) < online_share, rng.choice([1, 2, 3], n, p=[0.5, 0.35, 0.15]), 0)
    browser_mobile = rng.random((n, 3)) < 0.55
    web_anon = _chunks(uuid_strings(rng, n * 3), 3)
    n_apps = np.where(rng.random(n) < P[:, 6] * has_account, rng.choice([1, 2], n, p=[0.8, 0.2]), 0)
    app_ios = rng.random((n, 2)) < 0.5
    ios_ids, android_ids = uuid_strings(rng, n * 2, upper=True), hex_strings(rng, n * 2, 16)
    device_id = [[ios_ids[2 * k + j] if app_ios[k, j] else android_ids[2 * k + j] for j in range(2)] for k in range(n)]
    app_anon = _chunks(uuid_strings(rng, n * 2), 2)
    wifi_mac = [":".join(h[i : i + 2] for i in range(0, 12, 2)) for h in hex_strings(rng, n, 12)]
    msg_anon = [
        [f"sms-{a}", f"wa-{b}", f"esp-{c}"]
        for a, b, c in zip(hex_strings(rng, n, 12), hex_strings(rng, n, 12), hex_strings(rng, n, 12), strict=False)
    ]
    # consent and preferences
    email_opt_in = has_email & (rng.random(n) < 0.7)
    sms_opt_in = has_phone & is_mobile & (rng.random(n) < 0.35)
    whatsapp_opt_in = has_phone & is_mobile & (rng.random(n) < 0.22)
    push_opt_in = (n_apps > 0) & (rng.random(n) < 0.6)
    pref_channel = rng.choice(len(CHANNEL_PREFS), n, p=[0.45, 0.2, 0.12, 0.13, 0.10])
    device_pref = np.where(n_apps > 0, 2, np.where(browser_mobile[:, 0], 1, 0))
    pref_device = np.where((persona == 1) | (n_browsers == 0), 3, device_pref)
    affinity = rng.dirichlet(np.full(len(w.CATEGORY_NAMES), 0.6), n)
    price_sensitivity = np.clip(rng.normal(P[:, 8], 0.15), 0.0, 1.0)
    response = rng.lognormal(-0.125, 0.5, (n, 4))
    response[:, 0] *= 0.5 + price_sensitivity  # bargain hunters love coupons
    response[:, 1] *= 0.5 + price_sensitivity
    response /= response.mean(axis=0, keepdims=True)

    def noise():
        return rng.lognormal(-0.18, 0.6, n)

    base_online = P[:, 1] * noise() * np.where(n_browsers + n_apps > 0, 1.0, 0.05)
    base_store = P[:, 2] * noise() * np.where(home_store >= 0, 1.0, 0.0)
    browse_rate = P[:, 3] * noise() * np.where(n_browsers + n_apps > 0, 1.0, 0.0)
    active_hour = np.clip(rng.normal(np.where(persona == 0, 20.0, 14.0), 3.0), 8.0, 22.5)
    ips = rng.integers(0, 2**24, n)
    ip = [f"{81 + (x >> 20) % 60}.{(x >> 12) & 255}.{(x >> 4) & 255}.{(x & 15) * 15 + 2}" for x in ips.tolist()]
    return People(
        pid,
        [f"P{p:07d}" for p in pid.tolist()],
        persona,
        gender,
        first,
        last,
        birth,
        age,
        city,
        postcode,
        address,
        home_store,
        email,
        has_email,
        phone_cc,
        phone_nsn,
        phone_split,
        is_mobile,
        has_phone,
        customer_number,
        has_account,
        user_id,
        is_member,
        card,
        card2,
        has_card2,
        member_since,
        n_browsers,
        browser_mobile,
        web_anon,
        n_apps,
        app_ios,
        device_id,
        app_anon,
        wifi_mac,
        msg_anon,
        email_opt_in,
        sms_opt_in,
        whatsapp_opt_in,
        push_opt_in,
        pref_channel,
        pref_device,
        affinity,
        price_sensitivity,
        response,
        base_online,
        base_store,
        browse_rate,
        active_hour,
        ip,
    )


def _ascii(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalpha())


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# --- raw identifiers -----------------------------------------------------------------------------


def email_raw(people: People, k: int, variant: int) -> str:
    """The raw form `variant` of person `k`'s e-mail."""
    return EMAIL_VARIANTS[variant](people.email[k], int(people.pid[k]))


def phone_raw(people: People, k: int, variant: int) -> str:
    """The raw form `variant` of person `k`'s phone."""
    return phone_variant(people.phone_cc[k], people.phone_nsn[k], int(people.phone_split[k]), variant)


def customer_number_raw(people: People, k: int, variant: int) -> str:
    return CUSTOMER_NUMBER_VARIANTS[variant](people.customer_number[k])


def name_postcode(people: People, k: int) -> str:
    return f"{people.first[k].lower()} {people.last[k].lower()}|{people.postcode[k].replace(' ', '').upper()}"


def write_identities(writer: CsvWriter, people: People, ledger: IdentityLedger) -> int:
    """Write the ground-truth rows of every identifier of this block that was emitted."""
    rows: list[tuple[str, str, str, str]] = []
    pids = people.person_id
    for k, bit in ledger.set_positions("email"):
        raw = email_raw(people, k, bit)
        rows.append(("email", raw.strip().lower(), raw, pids[k]))
    for k, bit in ledger.set_positions("phone"):
        rows.append(("phone", phone_raw(people, k, 0), phone_raw(people, k, bit), pids[k]))
    for k, bit in ledger.set_positions("customer_number"):
        rows.append(("customer_number", people.customer_number[k], customer_number_raw(people, k, bit), pids[k]))
    for k, _ in ledger.set_positions("user_id"):
        rows.append(("user_id", people.user_id[k], people.user_id[k], pids[k]))
    for k, bit in ledger.set_positions("loyalty_card"):
        raw = people.card[k] if bit == 0 else people.card2[k]
        rows.append(("loyalty_card", raw, raw, pids[k]))
    for k, bit in ledger.set_positions("web_anon"):
        rows.append(("anonymous_id", people.web_anon[k][bit], people.web_anon[k][bit], pids[k]))
    for k, bit in ledger.set_positions("app_anon"):
        rows.append(("anonymous_id", people.app_anon[k][bit], people.app_anon[k][bit], pids[k]))
    for k, bit in ledger.set_positions("msg_anon"):
        rows.append(("anonymous_id", people.msg_anon[k][bit], people.msg_anon[k][bit], pids[k]))
    for k, bit in ledger.set_positions("device_id"):
        raw = people.device_id[k][bit] if bit < 2 else people.wifi_mac[k]
        rows.append(("device_id", raw.lower(), raw, pids[k]))
    for k, _ in ledger.set_positions("name_postcode"):
        raw = f"{people.first[k]} {people.last[k]}|{people.postcode[k]}"
        rows.append(("name_postcode", name_postcode(people, k), raw, pids[k]))
    rows.extend(ledger.extra)
    writer.writerows(rows)
    return len(rows)
