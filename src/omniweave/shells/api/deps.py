"""The REST API's dependencies, as `Annotated` aliases: the Runtime, and the one check of a secret key.

Routers write `runtime: RuntimeDep` and `_: SecretKey` (or `dependencies=[SECRET_KEY]` on the router);
nothing else in the API reads the Authorization header or opens a store.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from omniweave.collect.http.body import key_from_authorization
from omniweave.errors import AuthError
from omniweave.runtime import Runtime
from omniweave.shells.api.errors import ApiError

_AUTHORIZATION = APIKeyHeader(
    name="Authorization",
    scheme_name="secretKey",
    description="A secret key from `omniweave keys secret`: `Bearer <key>`, or Basic with the key as user name.",
    auto_error=False,
)
_REFUSED = (
    "a secret key is required (Bearer, or Basic with the key as user name); create one with `omniweave keys secret`"
)


def get_runtime(request: Request) -> Runtime:
    """The Runtime the app was built with (create_app opens one for the life of the app)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def require_secret_key(runtime: RuntimeDep, authorization: Annotated[str | None, Security(_AUTHORIZATION)]) -> str:
    """The request's secret key, or a 401: a write key (a source's) does not open the REST API.

    A plain function: FastAPI runs it in a worker thread, since it asks the operational store."""
    try:
        key = key_from_authorization(authorization)
    except AuthError:
        key = None
    if key is None or not runtime.store.is_secret_key(key):
        raise ApiError(401, "Authorization", _REFUSED)
    return key


SecretKey = Annotated[str, Depends(require_secret_key)]
SECRET_KEY = Depends(require_secret_key)
"""For `dependencies=[...]` of a router whose every route needs a secret key."""
