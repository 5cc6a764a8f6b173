"""A loopback identity provider: Bot Framework's OpenID metadata and JWKS, and an Entra-like token endpoint.

botframework-connector and msal fetch these with blocking `requests` calls from inside the app's event loop, so the
server runs in its own thread. msal only accepts https authorities, so it serves TLS with a throwaway certificate
that tests trust through REQUESTS_CA_BUNDLE.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
OUTBOUND_TOKEN = "loopback-outbound-token"


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class SigningKey:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self, endorsements: list[str]) -> dict[str, Any]:
        numbers = self.private.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "n": _b64(numbers.n),
            "e": _b64(numbers.e),
            "endorsements": endorsements,
        }

    def pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "idp-cert.pem", directory / "idp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class IdentityProvider:
    """Serves /openid, /keys, <tenant>/v2.0/.well-known/openid-configuration and <tenant>/oauth2/v2.0/token."""

    def __init__(self, directory: Path, *, endorsements: tuple[str, ...] = ("msteams",)) -> None:
        self.instance = uuid.uuid4().hex
        self.key = SigningKey(f"test-{self.instance[:8]}")
        self.endorsements = list(endorsements)
        self.token_requests: list[dict[str, str]] = []
        # Entra's own signing keys, for Teams SSO tokens (the tab): separate from the Bot Framework's.
        self.tab_keys = [SigningKey(f"entra-{self.instance[:8]}")]
        self.tab_fetches: list[str] = []  # metadata and key requests, for the cache's tests
        self.cert_path, key_path = _self_signed(directory)
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _json(self, body: dict[str, Any], status: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?")[0]
                if path == f"/openid/{provider.instance}":
                    self._json(
                        {
                            "issuer": BOT_FRAMEWORK_ISSUER,
                            "jwks_uri": f"{provider.base}/keys",
                            "id_token_signing_alg_values_supported": ["RS256"],
                        }
                    )
                elif path == "/keys":
                    self._json({"keys": [provider.key.jwk(provider.endorsements)]})
                elif path.endswith("/v2.0/.well-known/openid-configuration"):
                    tenant = path.split("/")[1]
                    provider.tab_fetches.append(path)
                    # As Entra: the multi-tenant endpoints publish an issuer template with {tenantid}.
                    issuer_tenant = "{tenantid}" if tenant in ("common", "organizations") else tenant
                    self._json(
                        {
                            "issuer": f"{provider.base}/{issuer_tenant}/v2.0",
                            "authorization_endpoint": f"{provider.base}/{tenant}/oauth2/v2.0/authorize",
                            "token_endpoint": f"{provider.base}/{tenant}/oauth2/v2.0/token",
                            "jwks_uri": f"{provider.base}/{tenant}/discovery/v2.0/keys",
                            "id_token_signing_alg_values_supported": ["RS256"],
                        }
                    )
                elif path.endswith("/discovery/v2.0/keys"):
                    provider.tab_fetches.append(path)
                    self._json({"keys": [{**key.jwk([]), "x5t": key.kid} for key in provider.tab_keys]})
                else:
                    self._json({"error": "not_found"}, 404)

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(pair.split("=", 1) for pair in self.rfile.read(length).decode().split("&") if pair)
                if self.path.split("?")[0].endswith("/oauth2/v2.0/token"):
                    provider.token_requests.append(form)
                    self._json({"token_type": "Bearer", "expires_in": 3600, "access_token": OUTBOUND_TOKEN})
                else:
                    self._json({"error": "not_found"}, 404)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, key_path)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.base = f"https://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="test-idp", daemon=True)

    @property
    def openid_url(self) -> str:
        # Unique per provider: botframework-connector caches metadata per URL for the life of the process.
        return f"{self.base}/openid/{self.instance}"

    def login_url(self, tenant_id: str) -> str:
        return f"{self.base}/{tenant_id}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def token(
        self,
        *,
        audience: str,
        service_url: str,
        issuer: str = BOT_FRAMEWORK_ISSUER,
        expires_in: int = 3600,
        key: SigningKey | None = None,
        **claims: Any,
    ) -> str:
        """A Bot Connector service token as Teams sends it to the bot."""
        now = int(time.time())
        payload = {
            "iss": issuer,
            "aud": audience,
            "serviceurl": service_url,
            "nbf": now - 60,
            "iat": now - 60,
            "exp": now + expires_in,
            **claims,
        }
        signer = key or self.key
        return jwt.encode(payload, signer.pem(), algorithm="RS256", headers={"kid": signer.kid})

    @property
    def tab_metadata_url(self) -> str:
        """Entra's multi-tenant OpenID metadata, as ESAFETY_TAB_OPENID_METADATA points at it."""
        return f"{self.base}/common/v2.0/.well-known/openid-configuration"

    def rotate_tab_key(self) -> SigningKey:
        """Entra publishes a new signing key (and keeps the old one, as it does during a rollover)."""
        key = SigningKey(f"entra-{uuid.uuid4().hex[:8]}")
        self.tab_keys.append(key)
        return key

    def tab_token(
        self,
        *,
        tenant_id: str,
        object_id: str,
        audience: str,
        expires_in: int = 3600,
        issuer: str | None = None,
        key: SigningKey | None = None,
        scope: str = "access_as_user",
        algorithm: str = "RS256",
        **claims: Any,
    ) -> str:
        """A Teams SSO token as getAuthToken hands it to a tab: an Entra v2 access token for the app's own API."""
        now = int(time.time())
        payload = {
            "iss": issuer or f"{self.base}/{tenant_id}/v2.0",
            "aud": audience,
            "tid": tenant_id,
            "oid": object_id,
            "scp": scope,
            "ver": "2.0",
            "nbf": now - 60,
            "iat": now - 60,
            "exp": now + expires_in,
            **claims,
        }
        signer = key or self.tab_keys[0]
        if algorithm == "HS256":  # a forgery: "signed" with a shared secret anyone can pick
            return jwt.encode(
                payload, "a-secret-anyone-could-pick-0123456789", algorithm="HS256", headers={"kid": signer.kid}
            )
        return jwt.encode(payload, signer.pem(), algorithm=algorithm, headers={"kid": signer.kid})
