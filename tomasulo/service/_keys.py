"""API keys: ``tmsk_<id>_<secret>``; the id is public, the secret is kept only as a salted hash.

A key is 16 hex characters of id and 43 characters of secret (32 random bytes, URL-safe base64).
The database keeps the id, a random salt and ``scrypt(secret, salt)``; checking a key looks the
row up by id and compares hashes in constant time (:func:`hmac.compare_digest`). The hash costs
tens of milliseconds by design, so a verified key is remembered for a short while
(:class:`VerifiedKeys`), and a revoked key stops working within that time on every replica (at
once on the replica that revoked it).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

__all__ = ["KEY_PREFIX", "Principal", "Role", "VerifiedKeys", "hash_secret", "new_key", "parse_key", "verify"]

Role = Literal["admin", "member"]
ROLES: tuple[Role, ...] = ("admin", "member")

KEY_PREFIX = "tmsk_"
_KEY = re.compile(r"^tmsk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
# scrypt's cost: 2**14 rounds, 16 MiB of memory (the parameters are stored with each hash)
_N, _R, _P = 2**14, 8, 1


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id, its tenant and its role."""

    key_id: str
    tenant_id: str
    role: Role

    @property
    def is_admin(self) -> bool:
        """Whether the key may manage tenants and keys."""
        return self.role == "admin"


def new_key() -> tuple[str, str, str]:
    """A fresh key: ``(key_id, secret, full_key)``; the full key is shown to its owner once."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return key_id, secret, f"{KEY_PREFIX}{key_id}_{secret}"


def parse_key(token: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a well-formed key, else ``None``."""
    match = _KEY.match(token)
    return (match.group(1), match.group(2)) if match else None


def hash_secret(secret: str, salt: bytes | None = None) -> tuple[str, str]:
    """``(salt_hex, hash_text)`` for storing; ``hash_text`` carries the scrypt parameters."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return salt.hex(), f"scrypt:{_N}:{_R}:{_P}:{digest.hex()}"


def verify(secret: str, salt_hex: str, stored: str) -> bool:
    """Whether ``secret`` matches a stored hash (constant-time comparison)."""
    try:
        kind, n, r, p, want = stored.split(":")
        salt = bytes.fromhex(salt_hex)
        expected = bytes.fromhex(want)
    except ValueError:
        return False
    if kind != "scrypt":
        return False
    got = hashlib.scrypt(secret.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected))
    return hmac.compare_digest(got, expected)


class VerifiedKeys:
    """Keys verified recently, so that each request does not pay for scrypt.

    Entries are keyed by a SHA-256 of the whole key (never the key itself) and last ``ttl``
    seconds; :meth:`forget` drops a revoked key at once.
    """

    def __init__(self, ttl: float = 30.0, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: OrderedDict[bytes, tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _digest(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def get(self, token: str) -> Principal | None:
        """The principal of a key verified less than ``ttl`` seconds ago."""
        digest = self._digest(token)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if entry[0] < time.monotonic():
                del self._entries[digest]
                return None
            self._entries.move_to_end(digest)
            return entry[1]

    def put(self, token: str, principal: Principal) -> None:
        """Remember a verified key."""
        with self._lock:
            self._entries[self._digest(token)] = (time.monotonic() + self.ttl, principal)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def forget(self, key_id: str | None = None, tenant_id: str | None = None) -> None:
        """Drop the entries of a key, or of every key of a tenant."""
        with self._lock:
            for digest, (_, who) in list(self._entries.items()):
                if who.key_id == key_id or who.tenant_id == tenant_id:
                    del self._entries[digest]
