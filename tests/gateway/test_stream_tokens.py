"""Stream tokens (contract A): what the send answer and the token routes hand out, what the
event-stream GETs accept in ``?access_token=``, and everything they refuse."""

from __future__ import annotations

import time

import httpx
import pytest

from gateway import stream_tokens
from gateway.stream_tokens import Claims
from shared import keys
from tests import sse
from tests.gateway.test_messages import new_session, send

pytestmark = pytest.mark.integration


def secret(stack) -> bytes:
    return stack.redis_call(lambda r: r.get(keys.STREAM_TOKEN_SECRET))


def code(r: httpx.Response) -> str | None:
    return r.json()["error"]["code"]


def events_url(sid: str, mid: str) -> str:
    return f"/v1/agents/sessions/{sid}/messages/{mid}/events"


@pytest.fixture
def sent(api):
    sid = new_session(api)
    r = send(api, sid, "hello there")
    assert r.status_code == 200
    return sid, r.headers["x-message-id"], r.headers["x-stream-token"], r.text


# --- pure ----------------------------------------------------------------------------------------


def test_token_round_trip_and_refusals():
    claims = Claims(kid="key_a", ns="ns_a", ses="ses_a", msg="msg_a", exp=int(time.time()) + 60)
    token = stream_tokens.issue(b"s" * 32, claims)
    assert stream_tokens.looks_like(token) and not stream_tokens.looks_like("sk_abc")
    assert stream_tokens.verify(b"s" * 32, token) == claims
    with pytest.raises(stream_tokens.TokenError) as exc:
        stream_tokens.verify(b"t" * 32, token)
    assert exc.value.code == "invalid_stream_token"
    with pytest.raises(stream_tokens.TokenError) as exc:
        stream_tokens.verify(b"s" * 32, token, now_s=claims.exp)
    assert exc.value.code == "stream_token_expired"
    for bad in ("", "ast1.", "ast1..", token + "x", token.replace(".", "", 1), "ast1.e30." + token.rsplit(".", 1)[1]):
        with pytest.raises(stream_tokens.TokenError):
            stream_tokens.verify(b"s" * 32, bad)


# --- over HTTP ----------------------------------------------------------------------------------


def test_send_answer_carries_a_token_that_opens_exactly_its_stream(gateway, sent):
    sid, mid, token, text = sent
    r = httpx.get(gateway.url + events_url(sid, mid), params={"access_token": token})  # no key, no namespace
    assert r.status_code == 200, r.text
    assert [e.id for e in sse.parse(r.text)] == [e.id for e in sse.parse(text)]


def test_json_answer_carries_a_token_too(api, gateway):
    sid = new_session(api)
    r = send(api, sid, "hello", stream=False)
    assert r.status_code == 200
    token = r.headers["x-stream-token"]
    assert httpx.get(gateway.url + events_url(sid, r.json()["message_id"]), params={"access_token": token}).status_code == 200


def test_token_routes_answer_the_contract_shape(api, gateway, sent):
    sid, mid, _, _ = sent
    for path in (f"/v1/agents/sessions/{sid}/messages/{mid}/stream-token", f"/v1/agents/sessions/{sid}/events/stream-token"):
        r = api.post(path)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"token", "expires_at", "expires_in"}
        assert 890 <= body["expires_in"] <= 900 and body["expires_at"].endswith("Z")
    session_token = r.json()["token"]
    r = httpx.get(gateway.url + f"/v1/agents/sessions/{sid}/events", params={"access_token": session_token})
    assert r.status_code == 200 and sse.parse(r.text)[-1].type == "done"
    # a session token is not a message token, and the other way round
    r = httpx.get(gateway.url + events_url(sid, mid), params={"access_token": session_token})
    assert r.status_code == 401 and code(r) == "stream_token_mismatch"
    assert api.post(f"/v1/agents/sessions/{sid}/messages/msg_nope/stream-token").status_code == 404


def test_token_for_another_message_or_session_is_refused(api, gateway, sent):
    sid, mid, token, _ = sent
    other_mid = send(api, sid, "again").headers["x-message-id"]
    other_sid = new_session(api)
    for url in (events_url(sid, other_mid), events_url(other_sid, mid), f"/v1/agents/sessions/{sid}/events"):
        r = httpx.get(gateway.url + url, params={"access_token": token})
        assert r.status_code == 401 and code(r) == "stream_token_mismatch", (url, r.text)


def test_token_for_another_namespace_is_refused(stack, gateway, sent, tenant):
    sid, mid, token, _ = sent
    key, ns, ns_id = tenant
    other_key, other_ns, other_ns_id = stack.new_tenant()
    # naming another tenant's namespace beside a valid token
    r = httpx.get(gateway.url + events_url(sid, mid), params={"access_token": token, "namespace": other_ns})
    assert r.status_code in (401, 404), r.text
    # a correctly signed token whose namespace the key does not have
    claims = stream_tokens.verify(secret(stack), token)
    forged = stream_tokens.issue(secret(stack), Claims(kid=claims.kid, ns=other_ns_id, ses=sid, msg=mid, exp=claims.exp))
    r = httpx.get(gateway.url + events_url(sid, mid), params={"access_token": forged})
    assert r.status_code == 401 and code(r) == "stream_token_mismatch"


def test_expired_or_tampered_tokens_are_refused(stack, gateway, sent):
    sid, mid, token, _ = sent
    claims = stream_tokens.verify(secret(stack), token)
    expired = stream_tokens.issue(secret(stack), Claims(kid=claims.kid, ns=claims.ns, ses=sid, msg=mid,
                                                        exp=int(time.time()) - 1))
    r = httpx.get(gateway.url + events_url(sid, mid), params={"access_token": expired})
    assert r.status_code == 401 and code(r) == "stream_token_expired"
    body, sig = token.rsplit(".", 1)
    tampered = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + sig
    r = httpx.get(gateway.url + events_url(sid, mid), params={"access_token": tampered})
    assert r.status_code == 401 and code(r) == "invalid_stream_token"
    r = httpx.get(gateway.url + events_url(sid, mid), params={"access_token": token[:-3]})
    assert r.status_code == 401 and code(r) == "invalid_stream_token"


def test_api_key_in_url_is_refused_naming_the_alternative(gateway, sent, tenant):
    sid, mid, _, _ = sent
    key, ns, _ = tenant
    r = httpx.get(gateway.url + events_url(sid, mid), params={"access_token": key, "namespace": ns})
    assert r.status_code == 401 and code(r) == "api_key_in_url"
    assert "stream token" in r.json()["error"]["message"] and "stream-token" in r.json()["error"]["message"]


def test_api_key_in_url_allowed_by_the_compatibility_setting(stack, sent, tenant):
    sid, mid, _, _ = sent
    key, ns, _ = tenant
    gw = stack.start_gateway(AGENTSTREAM_ALLOW_KEY_IN_URL="true")
    try:
        r = httpx.get(gw.url + events_url(sid, mid), params={"access_token": key, "namespace": ns})
        assert r.status_code == 200 and sse.parse(r.text)[-1].type == "done"
    finally:
        stack.stop_proc(gw)


def test_the_secret_setting_is_checked_and_never_shown():
    from shared.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="AGENTSTREAM_STREAM_TOKEN_SECRET"):
        Settings.from_env({"AGENTSTREAM_STREAM_TOKEN_SECRET": "too-short"})
    settings = Settings.from_env({"AGENTSTREAM_STREAM_TOKEN_SECRET": "x" * 40, "AGENTSTREAM_STREAM_TOKEN_TTL_S": "60",
                                  "AGENTSTREAM_ALLOW_KEY_IN_URL": "true", "AGENTSTREAM_KEY_CHECK_S": "0.5"})
    assert "x" * 40 not in repr(settings)
    assert (settings.stream_token_ttl_s, settings.allow_key_in_url, settings.key_check_s) == (60, True, 0.5)
