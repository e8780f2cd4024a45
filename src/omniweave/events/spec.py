"""The event names of the Segment spec that the rest of omniweave relies on.

E-commerce v2, e-mail, mobile/messaging, video, gift cards, and the offline names omniweave's importers
produce.
Using these constants (not string literals) is how later stages find purchases, touches and
feedback in the event log.
"""

from __future__ import annotations

EVENT_TYPES = ("track", "identify", "page", "screen", "group", "alias")

# E-commerce spec v2
PRODUCTS_SEARCHED = "Products Searched"
PRODUCT_LIST_VIEWED = "Product List Viewed"
PRODUCT_LIST_FILTERED = "Product List Filtered"
PROMOTION_VIEWED = "Promotion Viewed"
PROMOTION_CLICKED = "Promotion Clicked"
PRODUCT_CLICKED = "Product Clicked"
PRODUCT_VIEWED = "Product Viewed"
PRODUCT_ADDED = "Product Added"
PRODUCT_REMOVED = "Product Removed"
CART_VIEWED = "Cart Viewed"
CHECKOUT_STARTED = "Checkout Started"
CHECKOUT_STEP_VIEWED = "Checkout Step Viewed"
CHECKOUT_STEP_COMPLETED = "Checkout Step Completed"
PAYMENT_INFO_ENTERED = "Payment Info Entered"
ORDER_UPDATED = "Order Updated"
ORDER_COMPLETED = "Order Completed"
ORDER_REFUNDED = "Order Refunded"
ORDER_CANCELLED = "Order Cancelled"
COUPON_ENTERED = "Coupon Entered"
COUPON_APPLIED = "Coupon Applied"
COUPON_DENIED = "Coupon Denied"
COUPON_REMOVED = "Coupon Removed"
PRODUCT_ADDED_TO_WISHLIST = "Product Added to Wishlist"
PRODUCT_SHARED = "Product Shared"
PRODUCT_REVIEWED = "Product Reviewed"

ECOMMERCE_EVENTS = frozenset(
    {
        PRODUCTS_SEARCHED,
        PRODUCT_LIST_VIEWED,
        PRODUCT_LIST_FILTERED,
        PROMOTION_VIEWED,
        PROMOTION_CLICKED,
        PRODUCT_CLICKED,
        PRODUCT_VIEWED,
        PRODUCT_ADDED,
        PRODUCT_REMOVED,
        CART_VIEWED,
        CHECKOUT_STARTED,
        CHECKOUT_STEP_VIEWED,
        CHECKOUT_STEP_COMPLETED,
        PAYMENT_INFO_ENTERED,
        ORDER_UPDATED,
        ORDER_COMPLETED,
        ORDER_REFUNDED,
        ORDER_CANCELLED,
        COUPON_ENTERED,
        COUPON_APPLIED,
        COUPON_DENIED,
        COUPON_REMOVED,
        PRODUCT_ADDED_TO_WISHLIST,
        PRODUCT_SHARED,
        PRODUCT_REVIEWED,
    }
)

# E-mail spec
EMAIL_SENT = "Email Sent"
EMAIL_DELIVERED = "Email Delivered"
EMAIL_OPENED = "Email Opened"
EMAIL_LINK_CLICKED = "Email Link Clicked"
EMAIL_BOUNCED = "Email Bounced"
EMAIL_MARKED_AS_SPAM = "Email Marked as Spam"
UNSUBSCRIBED = "Unsubscribed"

EMAIL_EVENTS = frozenset(
    {EMAIL_SENT, EMAIL_DELIVERED, EMAIL_OPENED, EMAIL_LINK_CLICKED, EMAIL_BOUNCED, EMAIL_MARKED_AS_SPAM, UNSUBSCRIBED}
)

# Messaging (SMS, WhatsApp, push) — same shape as the e-mail events
MESSAGE_SENT = "Message Sent"
MESSAGE_DELIVERED = "Message Delivered"
MESSAGE_OPENED = "Message Opened"
MESSAGE_LINK_CLICKED = "Message Link Clicked"
PUSH_NOTIFICATION_RECEIVED = "Push Notification Received"
PUSH_NOTIFICATION_TAPPED = "Push Notification Tapped"

# Advertising
AD_IMPRESSION = "Ad Impression"
AD_CLICKED = "Ad Clicked"

# Video (Segment's Video spec): the viewer pressed play; `video_views` counts these
VIDEO_PLAYBACK_STARTED = "Video Playback Started"

# Gift cards (omniweave's own names, in the style of the e-commerce spec; the `gift_cards` importer
# produces them): properties gift_card_id, value (sold, or spent in one redemption), order_id, store_id
GIFT_CARD_PURCHASED = "Gift Card Purchased"
GIFT_CARD_REDEEMED = "Gift Card Redeemed"

# Offline (produced by the built-in importers)
STORE_VISITED = "Store Visited"
EVENT_ATTENDED = "Store Event Attended"
EVENT_RSVP = (
    "Store Event RSVP"  # omniweave: a person answered an invitation; same event_id/event_name as the attendance
)
EMAIL_CAPTURED = "Email Captured"  # omniweave: an address captured at a till or tablet (`email_capture` importer)
LOYALTY_SIGNED_UP = "Loyalty Signed Up"
QR_CODE_SCANNED = "QR Code Scanned"
CALL_CENTRE_CONTACTED = "Call Centre Contacted"
DIRECT_MAIL_SENT = "Direct Mail Sent"
COUPON_ISSUED = "Coupon Issued"
COUPON_REDEEMED = "Coupon Redeemed"  # omniweave: a personal code came back; carries the issuing message's channel

# omniweave's own bookkeeping (segments/service/evaluate.py): facts about a person, not touches by them
SEGMENT_ENTERED = "Segment Entered"
SEGMENT_EXITED = "Segment Exited"
INTERNAL_EVENTS = (SEGMENT_ENTERED, SEGMENT_EXITED)

PLATFORM_CHANNEL = "omniweave"
"""The channel of omniweave's own bookkeeping events (segment changes): never a customer's activity."""
PLATFORM_EVENTS = frozenset(
    {
        *INTERNAL_EVENTS,
        EMAIL_SENT,
        EMAIL_DELIVERED,
        EMAIL_BOUNCED,
        "Email Failed",
        MESSAGE_SENT,
        MESSAGE_DELIVERED,
        PUSH_NOTIFICATION_RECEIVED,
        AD_IMPRESSION,
        COUPON_ISSUED,
        DIRECT_MAIL_SENT,
        *(
            f"{label} {what}"
            for label in ("SMS", "WhatsApp")
            for what in ("Sent", "Delivered", "Undelivered", "Failed")
        ),
        "Push Sent",
        "Push Failed",
        "Push Subscription Dropped",
        "Webhook Delivered",
        "Webhook Failed",
        "Letter Sent",
        "Letter Delivered",
        "Letter Failed",
        "Audience Member Added",
        "Audience Member Removed",
        "Audience Sync Failed",
    }
)
"""Events written by omniweave or a provider on its behalf about what was done *to* a person (a send, a
delivery, a bounce, an impression, an issued coupon, an audience sync, a segment change). They are not the
person's own activity: KPIs leave them out of every "active people" count (measure/kpis.py
`customer_activity`). What a person does in answer (opens, clicks, replies, reads, STOP, redemptions, a
survey answer) is their own activity."""
SURVEY_ANSWERED = "Survey Answered"
EXPERIMENT_VIEWED = "Experiment Viewed"  # Segment A/B testing spec: experiment_id, variation_id (or _name)

# Properties that must be numbers whenever they appear on a spec event.
NUMERIC_PROPERTIES = frozenset(
    {"revenue", "total", "subtotal", "value", "price", "quantity", "discount", "shipping", "tax"}
)

# Channels a touch or a conversion can happen on.
CHANNELS = (
    "web",
    "app",
    "email",
    "sms",
    "whatsapp",
    "push",
    "social",
    "search",
    "display",
    "store",
    "loyalty",
    "coupon",
    "qr",
    "print",
    "tv",
    "direct_mail",
    "call_centre",
    "other",
)

# Identifier kinds: the names of the identifiers an event carries (`userId`, `traits.email`,
# `context.device.id`, …). Identity ranks them in this order; the settings check `[identity]` against them.
IDENTIFIER_KINDS = ("user_id", "email", "phone", "loyalty_card", "customer_number", "device_id", "anonymous_id")
"""The built-in identifier kinds, highest priority first."""
COUPON_CODE_KIND = "coupon_code"
"""A personal coupon code (`properties.coupon_code` when issued, `properties.coupon` when redeemed)."""
