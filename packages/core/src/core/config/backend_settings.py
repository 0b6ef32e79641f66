"""`backend.settings` checked against the selected backend's schema (`Backend.settings_schema`).

The yaml's settings block is free-form to Hydra (each backend has its own keys); right after
composition, before anything starts, it is merged onto the backend's dataclass: a misspelt key or a
value of the wrong type is one line naming it, and the run reads typed values.
"""

from __future__ import annotations

import dataclasses

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from core.backends.base import Backend
from core.errors import TandemError


def check_backend_settings(cfg: DictConfig, backend: Backend) -> None:
    given = cfg.backend.get("settings") or {}
    schema = backend.settings_schema
    if schema is None:
        if given:
            raise TandemError(f"backend.settings: backend {backend.name} takes no settings (got {', '.join(given)})")
        return
    try:
        typed = OmegaConf.merge(OmegaConf.structured(schema), given)
    except ConfigKeyError as exc:
        known = ", ".join(f.name for f in dataclasses.fields(schema))
        raise TandemError(f"backend.settings.{exc.key}: not a setting of backend {backend.name} "
                          f"(its settings: {known})") from None
    except ValidationError as exc:
        reason = str(exc.msg).splitlines()[0]  # OmegaConf appends full_key/object_type lines
        raise TandemError(f"backend.settings.{exc.full_key}: {reason}") from None
    cfg.backend.settings = OmegaConf.to_container(typed)  # defaults filled in, interpolations kept
