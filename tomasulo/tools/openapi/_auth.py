"""Credentials for OpenAPI security schemes, read from the environment (never from a plan).

``auth`` maps a security scheme's name (a key of ``components.securitySchemes``) to where its
secrets are. A key ending in ``_env`` names an environment variable; the same key without it
gives the value itself (for code that has it already); the variable is read once, when the
tools are made, and a missing one is a :class:`~tomasulo.exceptions.ConfigError` that names the
variable (never a value):

=====================  ========================================================================
scheme                 keys
=====================  ========================================================================
apiKey (header,        ``key_env`` / ``key``
query or cookie)
http bearer            ``token_env`` / ``token``
http basic             ``username_env`` / ``username``, ``password_env`` / ``password``
oauth2 client          ``client_id_env`` / ``client_id``, ``client_secret_env`` /
credentials            ``client_secret``; optional ``scopes`` (a list), ``token_url`` (to
                       override the spec's), ``client_auth`` (``"body"``, the default, sends
                       the credentials in the form; ``"basic"`` in an Authorization header)
=====================  ========================================================================

An OAuth2 token is fetched on first use, cached until ``expires_in`` (less 10 seconds) and
fetched again after that, or once when a call is answered 401. Credentials never become tool
arguments, and every secret is scrubbed from error messages.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Mapping
from typing import Any

import anyio
import httpx

from ...exceptions import ConfigError, ToolHTTPError, ToolOutputError
from .._http_tool import HttpLimits, HttpRequest, RequestAuth, _scrub, _shown_url, read_bounded
from .._net import NetPolicy

__all__ = ["make_auth"]


def _secret(config: Mapping[str, Any], key: str, scheme: str, *, required: bool = True) -> str | None:
    env = config.get(f"{key}_env")
    if env is not None:
        value = os.environ.get(str(env))
        if value is None:
            raise ConfigError(
                f"auth for the security scheme {scheme!r}: the environment variable {env!r} "
                f"({key}) is not set; set it before loading the spec"
            )
        return value
    if key in config:
        return str(config[key])
    if required:
        raise ConfigError(
            f"auth for the security scheme {scheme!r} needs {key}_env (an environment variable "
            f"holding the {key}) or {key}"
        )
    return None


class ApiKeyAuth(RequestAuth):
    """An API key in a header, the query or a cookie."""

    def __init__(self, name: str, location: str, key: str) -> None:
        self.name, self.location, self.key = name, location, key

    async def apply(self, request: HttpRequest, client: httpx.AsyncClient, policy: NetPolicy) -> None:
        if self.location == "header":
            request.headers[self.name] = self.key
        elif self.location == "query":
            request.params.append((self.name, self.key))
        else:
            request.cookies[self.name] = self.key

    def secrets(self) -> list[str]:
        return [self.key]


class HeaderAuth(RequestAuth):
    """A fixed ``Authorization`` header (bearer or basic)."""

    def __init__(self, value: str, secrets: list[str]) -> None:
        self.value = value
        self._secrets = [value, *secrets]

    async def apply(self, request: HttpRequest, client: httpx.AsyncClient, policy: NetPolicy) -> None:
        request.headers["Authorization"] = self.value

    def secrets(self) -> list[str]:
        return list(self._secrets)


class ClientCredentials(RequestAuth):
    """OAuth2 client credentials: a cached bearer token, refreshed when it expires or on a 401."""

    def __init__(
        self,
        scheme: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        scopes: list[str],
        client_auth: str,
        limits: HttpLimits,
    ) -> None:
        self.scheme = scheme
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.scopes = scopes
        self.client_auth = client_auth
        self.limits = limits
        self.token: str | None = None
        self.expires_at = 0.0
        self.fetches = 0  #: how many tokens were fetched (for tests and logs)
        self._lock: anyio.Lock | None = None

    def secrets(self) -> list[str]:
        pair = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        return [s for s in (self.client_secret, pair, self.token) if s]

    def unauthorized(self) -> bool:
        self.token = None
        return True

    async def _fetch(self, client: httpx.AsyncClient) -> None:
        form = {"grant_type": "client_credentials"}
        if self.scopes:
            form["scope"] = " ".join(self.scopes)
        headers = {"Accept": "application/json"}
        if self.client_auth == "basic":
            pair = f"{self.client_id}:{self.client_secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        else:
            form["client_id"], form["client_secret"] = self.client_id, self.client_secret
        where = f"the token endpoint of {self.scheme!r} ({_shown_url(self.token_url)})"
        try:
            with anyio.fail_after(self.limits.timeout):
                request = client.build_request("POST", self.token_url, data=form, headers=headers)
                response = await client.send(request, stream=True)
                try:
                    body = await read_bounded(response, self.limits, "", where)
                finally:
                    await response.aclose()
        except ToolOutputError:
            raise ToolHTTPError(
                f"{where} answered more than {self.limits.max_response_bytes} bytes "
                "(max_response_bytes); a token answer is small: check token_url",
                method="POST",
                url=_shown_url(self.token_url),
            ) from None
        except (httpx.HTTPError, TimeoutError) as exc:
            raise ToolHTTPError(
                f"{where} could not be reached: {_scrub(str(exc) or type(exc).__name__, self.secrets())}",
                method="POST",
                url=_shown_url(self.token_url),
            ) from None
        if response.status_code >= 400:
            detail = _scrub(body[:200].decode("utf-8", errors="replace"), self.secrets())
            raise ToolHTTPError(
                f"{where} refused the client credentials ({response.status_code}): {detail}; "
                "check client_id and client_secret",
                status_code=response.status_code,
                method="POST",
                url=_shown_url(self.token_url),
            )
        try:
            payload = json.loads(body)
            token = str(payload["access_token"])
        except (ValueError, KeyError, TypeError, RecursionError):
            raise ToolHTTPError(
                f"{where} answered without an access_token",
                status_code=response.status_code,
                method="POST",
                url=_shown_url(self.token_url),
            ) from None
        expires = payload.get("expires_in")
        lifetime = float(expires) if isinstance(expires, int | float) else 3600.0
        self.token = token
        self.expires_at = time.monotonic() + max(lifetime - 10.0, lifetime / 2)
        self.fetches += 1

    async def apply(self, request: HttpRequest, client: httpx.AsyncClient, policy: NetPolicy) -> None:
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self.token is None or time.monotonic() >= self.expires_at:
                await self._fetch(client)
        request.headers["Authorization"] = f"Bearer {self.token}"


def make_auth(
    name: str,
    scheme: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    base_url: str,
    limits: HttpLimits,
    spec_url: str | None = None,
) -> RequestAuth:
    """The credentials for the security scheme ``name`` (see the module docstring).

    ``spec_url`` is where a fetched spec came from: its ``tokenUrl`` is then used only on the
    spec's own origin or ``base_url``'s (a remote spec does not choose where the client secret
    goes); elsewhere ``token_url`` must be given in ``config``.

    Raises:
        ConfigError: a secret's environment variable is not set, or the scheme is not supported.
    """
    kind = scheme.get("type")
    if kind == "apiKey":
        location = scheme.get("in", "header")
        if location not in ("header", "query", "cookie"):
            raise ConfigError(f"security scheme {name!r}: an API key 'in' {location!r} is not supported")
        key = _secret(config, "key", name)
        assert key is not None
        return ApiKeyAuth(str(scheme.get("name", "")), location, key)
    if kind == "http":
        http = str(scheme.get("scheme", "")).lower()
        if http == "bearer":
            token = _secret(config, "token", name)
            return HeaderAuth(f"Bearer {token}", [str(token)])
        if http == "basic":
            user = _secret(config, "username", name)
            password = _secret(config, "password", name)
            pair = base64.b64encode(f"{user}:{password}".encode()).decode()
            return HeaderAuth(f"Basic {pair}", [pair, str(password)])
        raise ConfigError(
            f"security scheme {name!r}: HTTP auth scheme {http!r} is not supported (bearer, basic)"
        )
    if kind == "oauth2":
        flows = scheme.get("flows") or {}
        flow = flows.get("clientCredentials")
        token_url = config.get("token_url") or (flow or {}).get("tokenUrl")
        if not token_url:
            raise ConfigError(
                f"security scheme {name!r}: only the OAuth2 client-credentials flow is supported, and "
                "it needs a tokenUrl (in the spec or as token_url)"
            )
        client_id = _secret(config, "client_id", name)
        client_secret = _secret(config, "client_secret", name)
        scopes = list(config.get("scopes") or [])
        client_auth = str(config.get("client_auth", "body"))
        if client_auth not in ("body", "basic"):
            raise ConfigError(f"security scheme {name!r}: client_auth must be 'body' or 'basic'")
        url = str(httpx.URL(base_url).join(str(token_url))) if base_url else str(token_url)
        if spec_url is not None and not config.get("token_url"):
            resolved = httpx.URL(spec_url).join(url)
            allowed = {(u.scheme, u.host, u.port) for u in map(httpx.URL, (spec_url, base_url or spec_url))}
            if (resolved.scheme, resolved.host, resolved.port) not in allowed:
                raise ConfigError(
                    f"security scheme {name!r}: the spec fetched from {_shown_url(spec_url)} sends the "
                    f"client credentials to {_shown_url(resolved)}, another origin; a remote spec does "
                    "not choose where secrets go: give token_url in auth to confirm it"
                )
            url = str(resolved)
        assert client_id is not None and client_secret is not None
        return ClientCredentials(name, url, client_id, client_secret, scopes, client_auth, limits)
    raise ConfigError(f"security scheme {name!r}: type {kind!r} is not supported (apiKey, http, oauth2)")
