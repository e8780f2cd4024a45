"""The entities of the demo retailer: cities, stores, catalogue, campaigns and customers.

Everything here is built from a numpy Generator, so the same seed gives the same world. The
customers of one block are columns (numpy arrays), never one object per person, so that a
million customers fit in memory and build in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

# --- reference data --------------------------------------------------------------------------


@dataclass(frozen=True)
class City:
    """A city customers live in (and maybe a store is in)."""

    name: str
    country: str  # GB, IE, NL
    time_zone: str
    weight: float  # share of customers
    outward: tuple[str, ...]  # postcode districts (GB/NL prefixes, IE routing keys)
    area_code: str  # landline area code, national significant part
    streets: tuple[str, ...] = (
        "High Street",
        "Station Road",
        "Church Lane",
        "Victoria Road",
        "Park Avenue",
        "Mill Lane",
        "King Street",
        "Queens Road",
    )


CITIES: tuple[City, ...] = (
    City("London", "GB", "Europe/London", 0.26, ("E1", "N1", "SW1A", "SE1", "W1", "NW3", "E14", "SW11"), "20"),
    City("Manchester", "GB", "Europe/London", 0.09, ("M1", "M4", "M14", "M20"), "161"),
    City("Birmingham", "GB", "Europe/London", 0.08, ("B1", "B5", "B15", "B29"), "121"),
    City("Leeds", "GB", "Europe/London", 0.06, ("LS1", "LS6", "LS8"), "113"),
    City("Glasgow", "GB", "Europe/London", 0.06, ("G1", "G3", "G12"), "141"),
    City("Edinburgh", "GB", "Europe/London", 0.05, ("EH1", "EH3", "EH10"), "131"),
    City("Bristol", "GB", "Europe/London", 0.05, ("BS1", "BS6", "BS8"), "117"),
    City("Liverpool", "GB", "Europe/London", 0.05, ("L1", "L8", "L17"), "151"),
    City("Cardiff", "GB", "Europe/London", 0.04, ("CF10", "CF11", "CF24"), "29"),
    City("Belfast", "GB", "Europe/London", 0.04, ("BT1", "BT7", "BT9"), "28"),
    City("Newcastle", "GB", "Europe/London", 0.04, ("NE1", "NE2", "NE6"), "191"),
    City("Nottingham", "GB", "Europe/London", 0.04, ("NG1", "NG5", "NG7"), "115"),
    City("Brighton", "GB", "Europe/London", 0.04, ("BN1", "BN2", "BN3"), "1273"),
    City(
        "Dublin",
        "IE",
        "Europe/Dublin",
        0.06,
        ("D02", "D04", "D06", "D08"),
        "1",
        ("Main Street", "Dame Street", "Grafton Street", "Pembroke Road"),
    ),
    City(
        "Amsterdam",
        "NL",
        "Europe/Amsterdam",
        0.04,
        ("1012", "1017", "1071", "1094"),
        "20",
        ("Prinsengracht", "Keizersgracht", "Damrak", "Overtoom"),
    ),
)
COUNTRY_CODES = {"GB": "44", "IE": "353", "NL": "31"}
MOBILE_PREFIX = {"GB": "7", "IE": "8", "NL": "6"}  # national significant number of a mobile starts so
STORE_CITIES = (
    "London",
    "London",
    "London",
    "Manchester",
    "Birmingham",
    "Leeds",
    "Glasgow",
    "Edinburgh",
    "Bristol",
    "Liverpool",
    "Cardiff",
    "Belfast",
    "Newcastle",
    "Nottingham",
    "Brighton",
)
STORE_FORMATS = (("flagship", 42_000, 65_000), ("high street", 9_000, 18_000), ("mall", 14_000, 30_000))

FIRST_NAMES_F = (
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Emily",
    "Sophia",
    "Grace",
    "Mia",
    "Poppy",
    "Ella",
    "Lily",
    "Evie",
    "Isabella",
    "Charlotte",
    "Jessica",
    "Sophie",
    "Chloe",
    "Lucy",
    "Hannah",
    "Ruby",
    "Freya",
    "Alice",
    "Sarah",
    "Emma",
    "Laura",
    "Rebecca",
    "Claire",
    "Niamh",
    "Aoife",
    "Saoirse",
    "Anna",
    "Fleur",
    "Sanne",
    "Priya",
    "Aisha",
    "Zara",
    "Fatima",
    "Mei",
    "Helen",
    "Margaret",
    "Susan",
    "Karen",
    "Julie",
    "Joanne",
)
FIRST_NAMES_M = (
    "Oliver",
    "George",
    "Harry",
    "Noah",
    "Jack",
    "Leo",
    "Arthur",
    "Muhammad",
    "Oscar",
    "Charlie",
    "Jacob",
    "Thomas",
    "James",
    "William",
    "Henry",
    "Alfie",
    "Joshua",
    "Daniel",
    "Samuel",
    "Ethan",
    "Liam",
    "Conor",
    "Sean",
    "Cian",
    "Daan",
    "Lars",
    "Sem",
    "Ravi",
    "Arjun",
    "Omar",
    "Yusuf",
    "Wei",
    "David",
    "Paul",
    "Mark",
    "Andrew",
    "Richard",
    "Peter",
    "Michael",
    "Stephen",
    "Robert",
    "Ian",
    "Gary",
    "Neil",
)
LAST_NAMES = (
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Robinson",
    "Wright",
    "Thompson",
    "Evans",
    "Walker",
    "White",
    "Roberts",
    "Green",
    "Hall",
    "Wood",
    "Jackson",
    "Clarke",
    "Patel",
    "Khan",
    "Lewis",
    "James",
    "Phillips",
    "Mason",
    "Mitchell",
    "Rose",
    "Davis",
    "Rodriguez",
    "Cox",
    "Alexander",
    "Morgan",
    "Murphy",
    "Kelly",
    "O'Brien",
    "Byrne",
    "Ryan",
    "O'Connor",
    "Walsh",
    "de Jong",
    "Jansen",
    "de Vries",
    "van Dijk",
    "Bakker",
    "Singh",
    "Ali",
    "Hussain",
    "Chen",
    "Wong",
    "Campbell",
    "Stewart",
    "MacDonald",
    "Scott",
    "Reid",
    "Murray",
    "Young",
    "King",
    "Hughes",
    "Edwards",
    "Harris",
    "Martin",
    "Turner",
    "Cooper",
    "Hill",
    "Ward",
)
EMAIL_DOMAINS = {
    "GB": (
        ("gmail.com", 0.38),
        ("hotmail.co.uk", 0.16),
        ("yahoo.co.uk", 0.1),
        ("outlook.com", 0.12),
        ("icloud.com", 0.12),
        ("btinternet.com", 0.07),
        ("live.co.uk", 0.05),
    ),
    "IE": (("gmail.com", 0.5), ("hotmail.com", 0.2), ("eircom.net", 0.15), ("icloud.com", 0.15)),
    "NL": (("gmail.com", 0.45), ("ziggo.nl", 0.2), ("kpnmail.nl", 0.15), ("outlook.com", 0.2)),
}

# --- catalogue ----------------------------------------------------------------------------------

CATEGORIES: tuple[tuple[str, int, float, float, float], ...] = (
    # name, products, min price, max price, margin (1 - cost/price)
    ("womenswear", 60, 12.0, 140.0, 0.58),
    ("menswear", 45, 12.0, 120.0, 0.55),
    ("kids", 35, 6.0, 45.0, 0.50),
    ("shoes", 30, 25.0, 150.0, 0.52),
    ("beauty", 40, 4.0, 60.0, 0.65),
    ("home", 45, 5.0, 200.0, 0.48),
    ("electronics", 25, 15.0, 400.0, 0.22),
    ("sports", 30, 10.0, 130.0, 0.45),
    ("food & drink", 40, 1.5, 25.0, 0.30),
)
CATEGORY_NAMES = tuple(c[0] for c in CATEGORIES)
_NOUNS = {
    "womenswear": ("Wrap Dress", "Linen Blouse", "Wool Coat", "Midi Skirt", "Knit Cardigan", "Trench Coat"),
    "menswear": ("Oxford Shirt", "Chino Trousers", "Wool Jumper", "Rain Jacket", "Polo Shirt", "Blazer"),
    "kids": ("Dungarees", "Hoodie", "Pyjama Set", "School Shoes", "Rain Boots", "T-Shirt 3-Pack"),
    "shoes": ("Leather Trainers", "Chelsea Boots", "Loafers", "Running Shoes", "Sandals", "Ankle Boots"),
    "beauty": ("Face Serum", "Lipstick", "Eau de Parfum", "Night Cream", "Mascara", "Shampoo"),
    "home": ("Bed Linen Set", "Scented Candle", "Table Lamp", "Cushion", "Dinner Set", "Throw"),
    "electronics": (
        "Wireless Earbuds",
        "Smart Speaker",
        "Phone Charger",
        "Fitness Tracker",
        "Headphones",
        "Power Bank",
    ),
    "sports": ("Yoga Mat", "Running Tights", "Gym Bag", "Water Bottle", "Training Top", "Dumbbells"),
    "food & drink": ("Coffee Beans", "Chocolate Box", "Olive Oil", "Tea Selection", "Wine Gift Set", "Biscuit Tin"),
}
_ADJECTIVES = (
    "Classic",
    "Organic",
    "Premium",
    "Essential",
    "Heritage",
    "Studio",
    "Coastal",
    "Urban",
    "Nordic",
    "Signature",
)


@dataclass(frozen=True)
class Catalogue:
    """Products as columns; products of a category are contiguous (`category_start`)."""

    sku: list[str]
    name: list[str]
    category: np.ndarray  # int index into CATEGORY_NAMES
    price: np.ndarray
    cost: np.ndarray
    category_start: np.ndarray  # first product index of each category
    category_size: np.ndarray


def build_catalogue(rng: np.random.Generator) -> Catalogue:
    """About 350 products in nine categories, with prices ending in .99/.49 and a cost per product."""
    skus: list[str] = []
    names: list[str] = []
    cats: list[int] = []
    prices: list[float] = []
    costs: list[float] = []
    starts: list[int] = []
    sizes: list[int] = []
    for ci, (cat, count, low, high, margin) in enumerate(CATEGORIES):
        starts.append(len(skus))
        sizes.append(count)
        raw = np.exp(rng.uniform(np.log(low), np.log(high), count))
        price = np.maximum(np.floor(raw) + rng.choice([0.99, 0.49, 0.0], count, p=[0.6, 0.25, 0.15]), 0.99)
        margin_each = np.clip(rng.normal(margin, 0.06, count), 0.05, 0.85)
        nouns, adjectives = _NOUNS[cat], _ADJECTIVES
        for k in range(count):
            skus.append(f"SKU-{ci + 1:02d}{k + 1:04d}")
            names.append(f"{adjectives[(k * 7 + ci) % len(adjectives)]} {nouns[k % len(nouns)]}")
        cats.extend([ci] * count)
        prices.extend(price.round(2))
        costs.extend((price * (1 - margin_each)).round(2))
    return Catalogue(skus, names, np.array(cats), np.array(prices), np.array(costs), np.array(starts), np.array(sizes))


# --- stores -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Store:
    """A store with its size (square feet), city and time zone."""

    store_id: str
    name: str
    city: str
    time_zone: str
    postcode: str
    floor_area_sqft: int
    store_format: str
    opened: date
    tills: int


def build_stores(rng: np.random.Generator, customers: int) -> list[Store]:
    """12 stores for a small world, more (up to 60) for a big one, spread over the UK cities."""
    count = int(np.clip(12 + customers // 40_000, 12, 60))
    cities = {c.name: c for c in CITIES}
    stores: list[Store] = []
    for i in range(count):
        city = cities[STORE_CITIES[i % len(STORE_CITIES)]]
        nth = sum(1 for s in stores if s.city == city.name)
        fmt_name, low, high = STORE_FORMATS[0 if i == 0 else (1 if rng.random() < 0.6 else 2)]
        area = int(rng.integers(low, high) // 100 * 100)
        suffix = ("Central", "Westfield", "Riverside", "Old Town", "Retail Park", "Station", "Market Square")[nth % 7]
        if nth >= 7:
            suffix += f" {nth // 7 + 1}"
        postcode = f"{city.outward[int(rng.integers(len(city.outward)))]} {int(rng.integers(1, 9))}{_letters(rng, 2)}"
        opened = date(2026, 1, 1) - timedelta(days=int(rng.integers(200, 9000)))
        stores.append(
            Store(
                f"S{i + 1:03d}",
                f"{city.name} {suffix}",
                city.name,
                city.time_zone,
                postcode,
                area,
                fmt_name,
                opened,
                max(2, area // 5000),
            )
        )
    return stores


def _letters(rng: np.random.Generator, k: int) -> str:
    return "".join(chr(65 + int(x)) for x in rng.choice(list(range(26)), k))


# --- campaigns -----------------------------------------------------------------------------------

PROMO_TYPES = ("coupon", "discount", "free_shipping", "event")


@dataclass(frozen=True)
class Campaign:
    """One send of an owned channel (e-mail, SMS, WhatsApp, push, direct mail) on one day."""

    campaign_id: str
    channel: str  # email | sms | whatsapp | push | direct_mail
    name: str  # the utm_campaign value
    day: int
    promo_type: str  # one of PROMO_TYPES
    subject: str
    reach: float  # share of the eligible audience that is sent to (the rest is a random holdout)
    discount_pct: int = 0
    city: str | None = None  # event promotions go to one city
    event_id: str | None = None
    offer_code: str | None = None


@dataclass(frozen=True)
class AdCampaign:
    """A paid campaign on a social, search or display platform, running over a range of days."""

    campaign_id: str
    channel: str  # social | search | display
    platform: str  # facebook | instagram | tiktok | google | bing | google_display
    name: str
    start_day: int
    end_day: int
    impression_rate: float  # daily impressions per online-active person
    click_rate: float  # clicks per impression
    cost_per_mille: float  # cost of 1,000 impressions (search: per click, see cost_per_click)
    cost_per_click: float = 0.0
    city: str | None = None
    utm_source: str = ""
    utm_medium: str = ""


@dataclass(frozen=True)
class QrPlacement:
    """A QR code printed in a magazine, on a poster or shown in a TV spot."""

    qr_code_id: str
    placement: str  # tv | print | flyer | poster | packaging | store
    campaign: str
    start_day: int
    end_day: int
    daily_scan_rate: float  # per person per active day
    spend_per_day: float  # at 2,000 customers; scaled with the size of the world


@dataclass(frozen=True)
class StoreEvent:
    """An in-store event (a masterclass, a launch night) promoted online beforehand."""

    event_id: str
    name: str
    store_id: str
    city: str
    day: int
    start_hour: int


@dataclass(frozen=True)
class Calendar:
    """Every campaign of the simulated period."""

    campaigns: list[Campaign] = field(default_factory=list)
    ads: list[AdCampaign] = field(default_factory=list)
    qr: list[QrPlacement] = field(default_factory=list)
    events: list[StoreEvent] = field(default_factory=list)


def build_calendar(rng: np.random.Generator, days: int, start: date, stores: list[Store]) -> Calendar:
    """Newsletters twice a week, SMS/WhatsApp/push promotions, direct-mail drops, ads, QR, events."""
    cal = Calendar()

    def tag(d):
        return (start + timedelta(days=d)).strftime("%Y%m%d")

    promos = ("discount", "coupon", "free_shipping", "discount")
    for d in range(days):
        weekday = (start + timedelta(days=d)).weekday()
        if weekday in (1, 4):  # Tuesday and Friday newsletters
            promo = promos[(d // 3) % len(promos)]
            cal.campaigns.append(
                Campaign(
                    f"EM-{tag(d)}",
                    "email",
                    f"newsletter_{tag(d)}",
                    d,
                    promo,
                    _subject(promo),
                    0.9,
                    discount_pct=int(rng.choice([10, 15, 20])),
                )
            )
        if d % 9 == 4:
            promo = ("coupon", "discount")[(d // 9) % 2]
            cal.campaigns.append(
                Campaign(
                    f"SMS-{tag(d)}", "sms", f"sms_flash_{tag(d)}", d, promo, _subject(promo), 0.85, discount_pct=15
                )
            )
        if d % 12 == 7:
            cal.campaigns.append(
                Campaign(
                    f"WA-{tag(d)}",
                    "whatsapp",
                    f"whatsapp_drop_{tag(d)}",
                    d,
                    "discount",
                    "New arrivals just for you",
                    0.85,
                    discount_pct=10,
                )
            )
        if d % 5 == 2:
            promo = ("coupon", "free_shipping", "discount")[(d // 5) % 3]
            cal.campaigns.append(
                Campaign(f"PU-{tag(d)}", "push", f"push_{tag(d)}", d, promo, _subject(promo), 0.9, discount_pct=10)
            )
    for k, d in enumerate(range(min(6, days - 1), days, 28)):
        cal.campaigns.append(
            Campaign(
                f"DM-{tag(d)}",
                "direct_mail",
                f"catalogue_mailing_{tag(d)}",
                d,
                "coupon",
                "Seasonal catalogue",
                0.8,
                discount_pct=20,
                offer_code=f"MAIL{20 + k}",
            )
        )
    # in-store events, each promoted by e-mail to its city a week before
    event_names = (
        "Autumn Style Night",
        "Beauty Masterclass",
        "Kids Craft Workshop",
        "Coffee Tasting",
        "Running Club Launch",
        "Home Styling Evening",
    )
    for k, d in enumerate(range(min(9, days - 1), days, 10)):
        store = stores[k % len(stores)]
        ev = StoreEvent(
            f"EV{k + 1:02d}", event_names[k % len(event_names)], store.store_id, store.city, d, 18 if k % 2 == 0 else 11
        )
        cal.events.append(ev)
        promo_day = max(0, d - 6)
        cal.campaigns.append(
            Campaign(
                f"EMEV-{ev.event_id}",
                "email",
                f"event_{ev.event_id.lower()}_{store.city.lower()}",
                promo_day,
                "event",
                f"You're invited: {ev.name}",
                1.0,
                city=store.city,
                event_id=ev.event_id,
            )
        )
        cal.ads.append(
            AdCampaign(
                f"AD-EV-{ev.event_id}",
                "social",
                "instagram",
                f"event_{ev.event_id.lower()}_promo",
                promo_day,
                d,
                0.25,
                0.02,
                7.5,
                city=store.city,
                utm_source="instagram",
                utm_medium="paid_social",
            )
        )
    cal.ads.extend(
        [
            AdCampaign(
                "AD-FB-SALE",
                "social",
                "facebook",
                "season_sale_fb",
                0,
                days - 1,
                0.05,
                0.012,
                6.0,
                utm_source="facebook",
                utm_medium="paid_social",
            ),
            AdCampaign(
                "AD-IG-NEW",
                "social",
                "instagram",
                "new_in_ig",
                days // 4,
                days - 1,
                0.04,
                0.015,
                7.0,
                utm_source="instagram",
                utm_medium="paid_social",
            ),
            AdCampaign(
                "AD-TT-TREND",
                "social",
                "tiktok",
                "trend_drop_tt",
                days // 2,
                days - 1,
                0.03,
                0.01,
                5.0,
                utm_source="tiktok",
                utm_medium="paid_social",
            ),
            AdCampaign(
                "AD-GG-BRAND",
                "search",
                "google",
                "brand_search",
                0,
                days - 1,
                0.008,
                0.35,
                0.0,
                cost_per_click=0.35,
                utm_source="google",
                utm_medium="cpc",
            ),
            AdCampaign(
                "AD-GG-GENERIC",
                "search",
                "google",
                "generic_search",
                0,
                days - 1,
                0.012,
                0.08,
                0.0,
                cost_per_click=0.9,
                utm_source="google",
                utm_medium="cpc",
            ),
            AdCampaign(
                "AD-BG-BRAND",
                "search",
                "bing",
                "brand_search_bing",
                0,
                days - 1,
                0.003,
                0.3,
                0.0,
                cost_per_click=0.25,
                utm_source="bing",
                utm_medium="cpc",
            ),
            AdCampaign(
                "AD-GDN-RT",
                "display",
                "google_display",
                "retargeting_display",
                0,
                days - 1,
                0.06,
                0.004,
                3.0,
                utm_source="google",
                utm_medium="display",
            ),
        ]
    )
    cal.qr.extend(
        [
            QrPlacement("QR-TV-01", "tv", "tv_spot_autumn", days // 3, min(days - 1, days // 3 + 13), 0.004, 400.0),
            QrPlacement("QR-PR-01", "print", "magazine_ad", 0, days - 1, 0.0012, 40.0),
            QrPlacement("QR-PO-01", "poster", "bus_stop_posters", days // 2, days - 1, 0.0008, 30.0),
            QrPlacement("QR-FL-01", "flyer", "store_flyer", 0, days - 1, 0.0006, 5.0),
        ]
    )
    return cal


def _subject(promo: str) -> str:
    return {
        "coupon": "A coupon just for you",
        "discount": "Up to 30% off this week",
        "free_shipping": "Free delivery this weekend",
        "event": "Join us in store",
    }[promo]
