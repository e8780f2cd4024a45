"""The privacy services: consent history (consent.py), data-subject requests (requests.py) and the
scrubbing they do in the warehouse, the operational store and the home folder (scrub.py)."""
