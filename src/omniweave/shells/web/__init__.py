"""The web dashboard (app.py) and its pages; the hosted sign-up forms keep their templates here too."""
