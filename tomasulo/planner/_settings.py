"""LLM settings from flags, environment variables and configuration files.

``resolve_model`` decides which server, model, dialect and key an :class:`~tomasulo.planner.LLM`
uses: flags win over the ``TOMASULO_*`` environment variables (:data:`ENV_VARS`), which win over
a file's ``model`` section.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, get_args

import httpx

from ..exceptions import ConfigError
from ._dialects import DEFAULT_DIALECT, Dialect
from ._llm import LLM

__all__ = ["ENV_VARS", "ModelDefaults", "ModelSettings", "resolve_model"]


class ModelDefaults(Protocol):
    """What a configuration file says about the LLM (a workflow's ``model:`` section)."""

    @property
    def base_url(self) -> str | None:
        """The server's OpenAI-compatible base URL."""
        ...

    @property
    def model(self) -> str | None:
        """The model's name."""
        ...

    @property
    def dialect(self) -> str | None:
        """Where the server takes the plan grammar."""
        ...

    @property
    def api_key_env(self) -> str | None:
        """The environment variable that holds the API key."""
        ...

    @property
    def temperature(self) -> float | None:
        """The sampling temperature."""
        ...


@dataclass(frozen=True, slots=True)
class _NoDefaults:
    base_url: str | None = None
    model: str | None = None
    dialect: str | None = None
    api_key_env: str | None = None
    temperature: float | None = None


_NO_DEFAULTS = _NoDefaults()

#: The environment variables that configure the LLM (flags win over them; they win over files).
ENV_VARS = {
    "base_url": "TOMASULO_BASE_URL",
    "model": "TOMASULO_MODEL",
    "dialect": "TOMASULO_DIALECT",
    "api_key": "TOMASULO_API_KEY",
}

MODEL_HELP = (
    "no LLM is configured. Give one with flags:\n"
    '  tomasulo ask "..." --base-url http://127.0.0.1:8000/v1 --model NAME --dialect vllm\n'
    "or with environment variables:\n"
    "  export TOMASULO_BASE_URL=http://127.0.0.1:11434/v1 TOMASULO_MODEL=qwen2.5 TOMASULO_DIALECT=ollama\n"
    "  export TOMASULO_API_KEY=...   (only if the server needs a key)\n"
    "or in a workflow file: model: {base_url: ..., model: ..., dialect: ...}.\n"
    f"Dialects: {', '.join(get_args(Dialect))}. "
    "To try it with no real server: tomasulo simulate-llm --script replies.txt"
)


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """A fully resolved LLM configuration."""

    base_url: str
    model: str
    dialect: Dialect
    api_key: str = "EMPTY"
    temperature: float | None = None

    def llm(self, http_client: httpx.AsyncClient | None = None) -> LLM:
        """An :class:`LLM` for these settings."""
        return LLM(
            self.base_url,
            model=self.model,
            dialect=self.dialect,
            api_key=self.api_key,
            temperature=self.temperature,
            http_client=http_client,
        )


def resolve_model(
    config: ModelDefaults | None = None,
    *,
    base_url: str | None = None,
    model: str | None = None,
    dialect: str | None = None,
    api_key: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ModelSettings:
    """Combine flags (the keyword arguments), environment variables and a file's ``model``
    section (``config``: a workflow's :class:`~tomasulo.workflows.ModelConfig`, or anything
    with the same attributes), in that order of precedence.

    >>> settings = resolve_model(base_url="http://127.0.0.1:8000/v1", model="m", environ={})
    >>> settings.model, settings.dialect, settings.api_key
    ('m', 'plain', 'EMPTY')

    The API key comes from ``api_key``, else ``TOMASULO_API_KEY``, else the variable named by
    ``config.api_key_env``.

    Raises:
        ConfigError: no base URL or model anywhere (the message says how to give them), or an
            unknown dialect.
    """
    env = os.environ if environ is None else environ
    cfg: ModelDefaults = config or _NO_DEFAULTS
    url = base_url or env.get(ENV_VARS["base_url"]) or cfg.base_url
    name = model or env.get(ENV_VARS["model"]) or cfg.model
    kind = dialect or env.get(ENV_VARS["dialect"]) or cfg.dialect or DEFAULT_DIALECT
    if not url or not name:
        missing = " and ".join(k for k, v in (("a base URL", url), ("a model name", name)) if not v)
        raise ConfigError(f"{MODEL_HELP}\n(missing: {missing})")
    if kind not in get_args(Dialect):
        raise ConfigError(f"unknown dialect {kind!r}; choose one of {', '.join(get_args(Dialect))}")
    key = api_key or env.get(ENV_VARS["api_key"])
    if key is None and cfg.api_key_env:
        key = env.get(cfg.api_key_env)
    return ModelSettings(url, name, kind, key or "EMPTY", cfg.temperature)  # type: ignore[arg-type]
