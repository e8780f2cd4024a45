"""The dashboard's pages: each module here registers its builder with `shells.web.app.page` when imported
(docs/dashboard.md); every module of this folder is imported."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
