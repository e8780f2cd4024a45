"""The HTTP shell: the collector's raw routes and the REST API's routers, one app (app.py `create_app`).

app.py       builds the app, its OpenAPI document, and `serve`
deps.py      the Runtime and the one secret-key check, as `Annotated` dependencies
errors.py    the one error body of the REST API, and the handlers that build it
schemas.py   pydantic request and response models (the edge only)
system.py    GET /health
profiles.py  /v1/profiles
segments.py  /v1/segments
messaging.py /v1/channels/{sms|whatsapp}/…, the SMS and WhatsApp providers' webhooks
collect.py   the collector's routes (collect/http/routes.py) in the OpenAPI document
loader.py    the loader process beside the server
"""
