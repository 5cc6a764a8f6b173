"""Field encryption at rest: AES-256-GCM with the key from ESAFETY_DATA_KEY."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import overload

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# v2:<key id>:<base64(nonce + ciphertext)>, bound to "table.column:<row identity>".
PREFIX = "v2:"
# Written before key ids: bound to "table.column" only. Still read; `python app.py rotate-key` upgrades them.
LEGACY_PREFIX = "v1:"


class KeyError_(ValueError):
    """The data key is missing or malformed."""


def parse_key(text: str) -> bytes:
    """Decode a URL-safe base64 key of exactly 32 bytes."""
    try:
        key = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (ValueError, TypeError) as exc:
        raise KeyError_("ESAFETY_DATA_KEY must be URL-safe base64") from exc
    if len(key) != 32:
        raise KeyError_("ESAFETY_DATA_KEY must decode to 32 bytes (generate one with `make key`)")
    return key


def new_key_text() -> str:
    return base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode().rstrip("=")


def dev_key(var_dir: Path) -> str:
    """The local development key, created under var/ on first use."""
    path = var_dir / "data.key"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(new_key_text() + "\n", encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


class SealBroken(ValueError):
    """A sealed value does not open: moved from another row, altered, or sealed with a key no longer configured."""


def key_id(key: bytes) -> str:
    """A short fingerprint naming the key a value was sealed with; it reveals nothing usable about the key."""
    return hashlib.sha256(key).hexdigest()[:8]


def row_context(table_column: str, *identity: object) -> str:
    """Associated data for one field of one row: a ciphertext moved to another row no longer opens."""
    return ":".join([table_column, *(str(part) for part in identity)])


def _legacy_context(context: str) -> str:
    return context.split(":", 1)[0]


class FieldCipher:
    """Encrypts a text field under the current key; the row's identity is bound in, so values cannot be swapped.

    Old keys only decrypt, so values sealed before a rotation still read back until `rotate-key` re-seals them.
    """

    def __init__(self, key: bytes, old_keys: Iterable[bytes] = ()) -> None:
        self.key_id = key_id(key)
        self._keys = {self.key_id: AESGCM(key)}
        for old in old_keys:
            self._keys.setdefault(key_id(old), AESGCM(old))

    # A value in, a sealed value out; None stays None (an empty optional column).
    @overload
    def encrypt(self, plaintext: str, context: str) -> str: ...

    @overload
    def encrypt(self, plaintext: None, context: str) -> None: ...

    @overload
    def encrypt(self, plaintext: str | None, context: str) -> str | None: ...

    def encrypt(self, plaintext: str | None, context: str) -> str | None:
        if plaintext is None:
            return None
        nonce = os.urandom(12)
        sealed = self._keys[self.key_id].encrypt(nonce, plaintext.encode("utf-8"), context.encode())
        return f"{PREFIX}{self.key_id}:" + base64.b64encode(nonce + sealed).decode()

    @overload
    def decrypt(self, stored: str, context: str) -> str: ...

    @overload
    def decrypt(self, stored: None, context: str) -> None: ...

    @overload
    def decrypt(self, stored: str | None, context: str) -> str | None: ...

    def decrypt(self, stored: str | None, context: str) -> str | None:
        if stored is None:
            return None
        where = _legacy_context(context)  # errors name the column only: the row identity may be a reference
        if stored.startswith(PREFIX):
            kid, _, body = stored[len(PREFIX) :].partition(":")
            aead = self._keys.get(kid)
            if aead is None:
                raise SealBroken(
                    f"{where}: sealed with key {kid}, which is neither ESAFETY_DATA_KEY nor in ESAFETY_DATA_KEYS_OLD"
                )
            return self._open(aead, body, context, where)
        if stored.startswith(LEGACY_PREFIX):
            body = stored[len(LEGACY_PREFIX) :]
            for aead in self._keys.values():
                try:
                    return self._open(aead, body, _legacy_context(context), where)
                except SealBroken:
                    continue
            raise SealBroken(f"{where}: a value in the old format opens with none of the configured keys")
        raise SealBroken(f"{where}: value is not encrypted with a known scheme")

    def is_current(self, stored: str | None) -> bool:
        """True when the value needs no re-sealing: absent, or already under the current key and format."""
        return stored is None or stored.startswith(f"{PREFIX}{self.key_id}:")

    def reseal(self, stored: str | None, context: str, old_context: str | None = None) -> str | None:
        """The value under the current key, bound to `context`; `old_context` is what it was bound to until now."""
        if stored is None:
            return None
        return self.encrypt(self.decrypt(stored, old_context or context), context)

    @staticmethod
    def _open(aead: AESGCM, body: str, context: str, where: str) -> str:
        try:
            raw = base64.b64decode(body, validate=True)
            return aead.decrypt(raw[:12], raw[12:], context.encode()).decode("utf-8")
        except (InvalidTag, ValueError) as exc:
            raise SealBroken(f"{where}: the sealed value does not belong to this row, or was altered") from exc
