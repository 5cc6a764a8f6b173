"""Authentication on, tested offline: inbound Bot Connector tokens are checked, outbound tokens come from msal."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from adapters.clock import SettableClock
from tests.support.auth import OUTBOUND_TOKEN, IdentityProvider, SigningKey
from tests.support.harness import Harness, start_harness
from tests.support.teams import TeamsUser

APP_ID = "6f1c2d3e-4a5b-4c6d-8e7f-901234567890"
TENANT = "00000000-0000-4000-8000-00000000d000"
BOT_FRAMEWORK_SCOPE = "https://api.botframework.com"


@pytest.fixture
def idp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[IdentityProvider]:
    provider = IdentityProvider(tmp_path)
    # msal and botframework-connector fetch with `requests`; trust the throwaway certificate for this test only.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(provider.cert_path))
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
async def secured(
    database_url: str, clock: SettableClock, tmp_path: Path, idp: IdentityProvider
) -> AsyncIterator[Harness]:
    """The real app outside dev mode, with an app id, password and tenant: authentication is on."""
    async with start_harness(
        database_url=database_url,
        clock=clock,
        var_dir=tmp_path / "var",
        features=[],
        dev=False,
        app_id=APP_ID,
        app_password="not-a-real-secret",
        app_tenant_id=TENANT,
        app_type="SingleTenant",
        openid_metadata_url=idp.openid_url,
        token_issuer="https://api.botframework.com",
        login_url=idp.login_url(TENANT),
        oauth_scope=BOT_FRAMEWORK_SCOPE,
        validate_authority=False,
    ) as running:
        yield running


def _leah(harness: Harness, token: str | None) -> TeamsUser:
    user = harness.user("Leah Brooks")
    user.token = token
    return user


async def _nothing_processed(harness: Harness) -> None:
    assert harness.connector.sent == []
    reference = await harness.parts.refs.get(harness.school.id, "person", harness.person_id("Leah Brooks"))
    assert reference is None, "a rejected request must not even be remembered"


async def test_valid_token_is_accepted_and_the_reply_is_sent_with_an_outbound_token(
    secured: Harness, idp: IdentityProvider
) -> None:
    token = idp.token(audience=APP_ID, service_url=secured.connector.url)
    reply = await _leah(secured, token).says("help")
    assert reply.status == 200
    assert reply.card["body"][0]["text"].startswith("Hello Leah")
    # The bot asked the (loopback) login service for a Bot Framework token as itself.
    assert idp.token_requests, "the reply must be sent with a token from the login service"
    request = idp.token_requests[-1]
    assert request["grant_type"] == "client_credentials" and request["client_id"] == APP_ID
    assert secured.connector.authorizations[-1] == f"Bearer {OUTBOUND_TOKEN}"


async def test_outbound_clients_are_reused_across_turns_and_proactive_sends(
    secured: Harness, idp: IdentityProvider
) -> None:
    leah = _leah(secured, idp.token(audience=APP_ID, service_url=secured.connector.url))
    for _ in range(3):
        assert (await leah.says("help")).status == 200
    async with secured.parts.uow() as uow:
        await uow.notify.to_person(secured.school.id, secured.person_id("Leah Brooks"), text="Checked and closed.")
    await secured.run_due_work()
    await secured.connector.wait_for(lambda sent: any(s.text == "Checked and closed." for s in sent))
    # Stock CloudAdapter builds new credentials (and asks the login service again) on every turn.
    assert len(idp.token_requests) == 1
    assert set(secured.connector.authorizations) == {f"Bearer {OUTBOUND_TOKEN}"}


async def test_no_token_is_401(secured: Harness) -> None:
    reply = await _leah(secured, None).says("help")
    assert reply.status == 401
    await _nothing_processed(secured)


async def test_garbage_token_is_401(secured: Harness) -> None:
    reply = await _leah(secured, "not-a-jwt").says("help")
    assert reply.status == 401
    await _nothing_processed(secured)


async def test_token_for_another_bot_is_401(secured: Harness, idp: IdentityProvider) -> None:
    token = idp.token(audience="another-bot-app-id", service_url=secured.connector.url)
    reply = await _leah(secured, token).says("help")
    assert reply.status == 401
    await _nothing_processed(secured)


async def test_expired_token_is_401(secured: Harness, idp: IdentityProvider) -> None:
    token = idp.token(audience=APP_ID, service_url=secured.connector.url, expires_in=-3600)
    reply = await _leah(secured, token).says("help")
    assert reply.status == 401
    await _nothing_processed(secured)


async def test_token_signed_with_an_unknown_key_is_401(secured: Harness, idp: IdentityProvider) -> None:
    token = idp.token(audience=APP_ID, service_url=secured.connector.url, key=SigningKey("someone-elses-key"))
    reply = await _leah(secured, token).says("help")
    assert reply.status == 401
    await _nothing_processed(secured)


async def test_token_forged_with_a_known_key_id_is_401(secured: Harness, idp: IdentityProvider) -> None:
    forger = SigningKey(idp.key.kid)  # right kid, wrong private key
    token = idp.token(audience=APP_ID, service_url=secured.connector.url, key=forger)
    reply = await _leah(secured, token).says("help")
    assert reply.status == 401
    await _nothing_processed(secured)


async def test_token_from_another_issuer_is_401(secured: Harness, idp: IdentityProvider) -> None:
    token = idp.token(audience=APP_ID, service_url=secured.connector.url, issuer="https://evil.example")
    reply = await _leah(secured, token).says("help")
    assert reply.status == 401
    await _nothing_processed(secured)


async def test_service_url_claim_must_match_the_activity(secured: Harness, idp: IdentityProvider) -> None:
    token = idp.token(audience=APP_ID, service_url="https://smba.trafficmanager.net/uk/")
    reply = await _leah(secured, token).says("help")
    assert reply.status == 401
    await _nothing_processed(secured)


async def test_key_not_endorsed_for_the_channel_is_401(
    database_url: str, clock: SettableClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = IdentityProvider(tmp_path, endorsements=("webchat",))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(provider.cert_path))
    provider.start()
    try:
        async with start_harness(
            database_url=database_url,
            clock=clock,
            var_dir=tmp_path / "var",
            features=[],
            dev=False,
            app_id=APP_ID,
            app_password="not-a-real-secret",
            app_tenant_id=TENANT,
            openid_metadata_url=provider.openid_url,
            token_issuer="https://api.botframework.com",
            login_url=provider.login_url(TENANT),
            oauth_scope=BOT_FRAMEWORK_SCOPE,
            validate_authority=False,
        ) as harness:
            token = provider.token(audience=APP_ID, service_url=harness.connector.url)
            reply = await _leah(harness, token).says("help")
            assert reply.status == 401
            await _nothing_processed(harness)
    finally:
        provider.stop()


async def test_rejections_say_little(secured: Harness) -> None:
    reply = await _leah(secured, "Bearer-less nonsense").says("help")
    assert reply.status == 401
    assert json.dumps(reply.body) == json.dumps({"error": "Unauthorized"})
