"""Content: a message written once, rendered for every channel under a brand kit, and checked.

- model.py: message files and the brand kit (`parse_message`, `parse_brand`), every problem at once;
- render.py: personalisation (sandboxed Jinja2, StrictUndefined) and one rendition per channel;
- checker.py: the rules a rendition must keep (channel limits, brand words, unsubscribe lines);
- library/: the built-in messages and the default brand kit.

The service (activate/service/messages.py) reads the files, looks the person up and sends.
"""
