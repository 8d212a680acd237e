"""The base model of every component's options: strict, so a misspelt option is an error."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigModel(BaseModel):
    """Base of component config models: unknown options are refused (with "did you mean")."""

    model_config = ConfigDict(extra="forbid")


class NoOptions(ConfigModel):
    """Config model of components that take no options."""
