"""Profile insights by response, shrunk toward the population: Ibis expressions, run by the profile build.

Three insights a journey reads, each saying `unknown` (or NULL for a number) rather than guessing
when the person's own history is too thin:

- `preferred_messaging_channel` (email, sms, whatsapp, push): the channel whose messages the person
  answers most *relative to everyone else on that channel*. Per channel, responses (opens, clicks,
  taps) per message received, shrunk toward the channel's population rate with the weight of
  `CHANNEL_PRIOR_MESSAGES` messages, divided by that population rate (a lift). Volume does not
  count: 30 e-mails ignored do not beat 3 WhatsApp messages answered. Channels differ a lot in
  their base rates (a WhatsApp message is opened far more often than an e-mail), which is why the
  lift, not the raw rate, is compared.
- `best_hour`: the hour of day (local) of the person's own activity — visits, page and product
  views, orders, never opens or clicks, whose time the sender chose — as a normal mean shrunk
  toward the population's (an empirical-Bayes posterior mean: the within-person spread and the
  spread between persons are estimated from the data).
- `responsive_promotion` (coupon, discount, free_shipping, event): responses to each promotion type
  against the responses expected from the person's own response rate on the channels that carried
  it, shrunk by `PROMOTION_PRIOR_RESPONSES` responses. Comparing raw rates confounds the promotion
  with the channel (an event invitation goes by e-mail, a discount by push).

docs/profiles.md explains each, and `omniweave demo` checks them against the demo world's truth.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

MESSAGING_CHANNELS = ("email", "sms", "whatsapp", "push")
"""Channels a journey can send a message on (the preferred messaging channel is one of these)."""
MESSAGE_RECEIVED, MESSAGE_RESPONSE = 1, 2
"""Values of the per-event `message` column: a message that reached the person, an answer to one."""
CHANNEL_PRIOR_MESSAGES = 8.0
"""Weight of the channel's population rate, in messages, in a person's shrunk response rate."""
MIN_MESSAGES = 4
"""Fewer messages received on all messaging channels together and the preferred messaging channel is unknown."""
MIN_OWN_ACTIVITY = 3
"""Fewer timed activities of the person's own and the best hour is unknown (NULL)."""
PROMOTION_PRIOR_RESPONSES = 1.5
"""Pseudo-responses added to both the observed and the expected responses of each promotion type."""
MIN_PROMOTION_RESPONSES = 2
"""Fewer responses to promotions than this and the most responsive promotion is unknown."""
UNKNOWN = "unknown"


def _messages(ev: ir.Table) -> ir.Table:
    return ev.filter(ev.message.isin((MESSAGE_RECEIVED, MESSAGE_RESPONSE)) & ev.channel.isin(MESSAGING_CHANNELS))


def message_population(ev: ir.Table) -> ir.Table:
    """Per messaging channel, `_pop_rate`: the responses per message received over everyone in `ev`.

    A build that runs by chunks of persons computes it once, over every person, and hands it to
    `preferred_messaging_channel` for each chunk (the sums are whole numbers: the same rate either way)."""
    msg = _messages(ev)
    counts = msg.group_by("channel").aggregate(
        _responses=(msg.message == MESSAGE_RESPONSE).sum().cast("int64"),
        _received=(msg.message == MESSAGE_RECEIVED).sum().cast("int64"),
    )
    # the counts stay beside the rate: the profile build's daily increment adds a day's to them
    return counts.mutate(
        _pop_rate=counts._responses.cast("float64") / ibis.greatest(counts._received, 1).cast("float64")
    )


def preferred_messaging_channel(ev: ir.Table, population: ir.Table | None = None) -> ir.Table:
    """Per person: `preferred_messaging_channel` and `messaging_response` (per channel: received,
    responses, lift), from `ev` with `person_id`, `channel` and `message` (MESSAGE_RECEIVED / RESPONSE).
    `population` is `message_population` of everyone (default: of `ev`)."""
    msg = _messages(ev)
    per = msg.group_by(["person_id", "channel"]).aggregate(
        received=(msg.message == MESSAGE_RECEIVED).sum().cast("int64"),
        responses=(msg.message == MESSAGE_RESPONSE).sum().cast("int64"),
    )
    if population is None:
        population = message_population(ev)
    per = per.join(population, "channel")
    m = CHANNEL_PRIOR_MESSAGES
    shrunk = (per.responses.cast("float64") + m * per._pop_rate) / (per.received.cast("float64") + m)
    lift = ibis.cases((per._pop_rate > 0, shrunk / per._pop_rate), else_=ibis.literal(1.0))
    per = per.mutate(lift=lift.round(4)).filter(per.received > 0)
    grouped = per.group_by("person_id").aggregate(
        _s=ibis.struct(
            {"channel": per.channel, "received": per.received, "responses": per.responses, "lift": per.lift}
        ).collect(),
        _ranked=ibis.struct({"k": -per.lift, "channel": per.channel}).collect(),
        _messages=per.received.sum(),
    )
    best = grouped._ranked.sort()[0].channel
    return grouped.select(
        "person_id",
        preferred_messaging_channel=ibis.cases((grouped._messages >= MIN_MESSAGES, best), else_=UNKNOWN),
        messaging_response=grouped._s.sort(),
    )


def own_hours(timed: ir.Table) -> ir.Table:
    """Per person, `n`, `total` and `squares` of the local hours (fractional) of the activities the person
    started: all `best_hour_from` needs, so that a build by chunks of persons can collect them and score
    everyone together (the shrinkage is estimated over all persons)."""
    return timed.group_by("person_id").aggregate(
        n=timed.count(), total=timed.hour.sum(), squares=(timed.hour * timed.hour).sum()
    )


def best_hour(timed: ir.Table) -> ir.Table:
    """Per person, `best_hour` (0-23, local): the shrunk mean hour of the person's own activity.

    `timed` has `person_id` and `hour` (local, fractional) for each activity the person started."""
    return best_hour_from(own_hours(timed))


def best_hour_from(per: ir.Table) -> ir.Table:
    """`best_hour` per person of `per` (`own_hours` of every person). The within-person variance is pooled
    over persons; the between-person variance is the variance of the persons' means less their expected
    sampling variance (at least 1 h²)."""
    per = per.mutate(mean=per.total / per.n)
    many = per.filter(per.n >= 2)
    within = many.aggregate(
        _within=((many.squares - many.n * many.mean * many.mean).sum() / (many.n - 1).sum()).cast("float64")
    )
    known = per.filter(per.n >= MIN_OWN_ACTIVITY)
    pop = known.aggregate(_mu=known.mean.mean(), _var_means=known.mean.var(how="pop"), _inv_n=(1.0 / known.n).mean())
    stats = pop.cross_join(within)
    stats = stats.mutate(
        _tau2=ibis.greatest(stats._var_means - stats._within * stats._inv_n, 1.0),
        _sigma2=ibis.greatest(ibis.coalesce(stats._within, 6.25), 0.25),
    )
    scored = known.cross_join(stats)
    precision = scored.n / scored._sigma2 + 1.0 / scored._tau2
    posterior = (scored.total / scored._sigma2 + scored._mu / scored._tau2) / precision
    hour = posterior.floor().clip(0, 23).cast("int32")
    return scored.select("person_id", best_hour=hour)


def promotion_cells(promo: ir.Table, promotion_types: tuple[str, ...]) -> ir.Table:
    """Per (person, channel, promotion type): `exposures` and `responses`.

    `promo` has `person_id`, `channel`, `promotion`, `campaign_id`, `exposure` (1 for a promotion
    received) and `response` (1 for an answer). Exposures of one campaign count once (a coupon
    issued with the message that carried it is the same promotion); one without a campaign id
    counts on its own."""
    promo = promo.filter(promo.promotion.isin(promotion_types))
    exposed = promo.exposure == 1
    return promo.group_by(["person_id", "channel", "promotion"]).aggregate(
        exposures=(promo.campaign_id.nunique(where=exposed) + (exposed & promo.campaign_id.isnull()).sum()).cast(
            "float64"
        ),
        responses=promo.response.sum().cast("float64"),
    )


def responsive_promotion(promo: ir.Table, promotion_types: tuple[str, ...]) -> ir.Table:
    """Per person, `responsive_promotion`: the promotion type answered most against expectation.

    A person's expected responses to a type are the exposures to it on each channel (`promotion_cells`)
    times the person's own response rate on that channel (over all types)."""
    cell = promotion_cells(promo, promotion_types)
    per_channel = cell.group_by(["person_id", "channel"]).aggregate(
        _ch_rate=cell.responses.sum() / ibis.greatest(cell.exposures.sum(), cell.responses.sum(), 1.0)
    )
    cell = cell.join(per_channel, ["person_id", "channel"])
    cell = cell.mutate(expected=cell.exposures * cell._ch_rate)
    per = cell.group_by(["person_id", "promotion"]).aggregate(
        responses=cell.responses.sum(), expected=cell.expected.sum()
    )
    a = PROMOTION_PRIOR_RESPONSES
    # rounded: two types tied in exact arithmetic (expected 0.5 + 0.53 + 0.14 against 0.53 + 0.14 + 0.5) differ
    # in the last bit by the order the engine summed them in, which changes from run to run; rounded, they
    # tie, and the tie is broken below by responses, then by name, the same every run
    per = per.mutate(score=((per.responses + a) / (per.expected + a)).round(9))
    grouped = per.group_by("person_id").aggregate(
        _ranked=ibis.struct({"k": -per.score, "k2": -per.responses, "promotion": per.promotion}).collect(),
        _responses=per.responses.sum(),
    )
    best = grouped._ranked.sort()[0].promotion
    return grouped.select(
        "person_id",
        responsive_promotion=ibis.cases((grouped._responses >= MIN_PROMOTION_RESPONSES, best), else_=UNKNOWN),
    )
