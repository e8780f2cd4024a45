"""Sign-up forms: definitions, submissions checked field by field, double opt-in, abuse limits, QR codes.

    definition.py  the form document (fields, purposes with their exact wording, thank-you, coupon, brand)
    submission.py  a submit checked: e-mail syntax offline, phone numbers to E.164, per-field errors
    wording.py     the words of every locale (locales/*.yaml) and which one a visitor gets
    abuse.py       token buckets per IP and per form, the signed render stamp, the honeypot
    service.py     the files, a submit through the collector path, confirmation, expiry, evidence, QR

Forms sit between privacy (the consent history a confirmation writes) and the shells (the hosted page
/f/NAME, the embeddable snippet, /v1/forms, `omniweave forms`). docs/forms.md tells the whole story.
"""
