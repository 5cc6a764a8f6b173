"""Field encryption at rest: AES-256-GCM with the key from ESAFETY_DATA_KEY."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "v1:"


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


class FieldCipher:
    """Encrypts a text field; the context (table.column) is bound in, so values cannot be swapped."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: str | None, context: str) -> str | None:
        if plaintext is None:
            return None
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), context.encode())
        return PREFIX + base64.b64encode(nonce + sealed).decode()

    def decrypt(self, stored: str | None, context: str) -> str | None:
        if stored is None:
            return None
        if not stored.startswith(PREFIX):
            raise ValueError(f"{context}: value is not encrypted with a known scheme")
        raw = base64.b64decode(stored[len(PREFIX):])
        return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode("utf-8")
