"""Email delivery through `SMTPResource`, against a real SMTP server on loopback (smtp_server.py).

Why: a digest that is sent twice, silently not sent, sent in clear, or that leaks the SMTP password into a
log is worse than no digest. These tests pin what each failure becomes (retry later, skip this recipient,
or stop and fix the settings), that TLS is always verified, that the password never shows up anywhere we
write, and that the outbox fallback writes each Message-ID once.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import socket
import threading
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import dagster as dg
import pytest

from hitcraft_assets.delivery.email.smtp import (
    DEFAULT_SENDER,
    SMTPConfigError,
    SMTPError,
    SMTPPermanentError,
    SMTPRecipientRefused,
    SMTPResource,
    SMTPTransientError,
    safe_message_id,
)
from hitcraft_assets_tests.smtp_server import (
    SMTPTestServer,
    free_port,
    make_self_signed_cert,
)

# aiosmtpd warns when AUTH is required without STARTTLS: the implicit-TLS server is encrypted from the start
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

USER = "mailer@hitcraft.test"
PASSWORD = "Pa55-w0rd-never-logged"
SECRET_FORMS = (
    PASSWORD,
    base64.b64encode(PASSWORD.encode()).decode(),                      # AUTH LOGIN's password line
    base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode(),       # AUTH PLAIN's initial response
)


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_self_signed_cert(tmp_path_factory.mktemp("cert"))


def make_message(to: str | list[str] = "ana@example.com", message_id: str | None = "<digest-1@hitcraft.test>",
                 body: str = "Three insights today.") -> EmailMessage:
    msg = EmailMessage()
    msg["To"] = to if isinstance(to, str) else ", ".join(to)
    msg["Subject"] = "HitCraft daily digest"
    if message_id:
        msg["Message-ID"] = message_id
    msg.set_content(body)
    msg.add_alternative(f"<html><body><p>{body}</p></body></html>", subtype="html")
    return msg


def smtp(server: SMTPTestServer, **kw) -> SMTPResource:
    return SMTPResource(host=server.host, port=server.port, local_hostname="localhost", timeout_s=5, **kw)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRET_FORMS:
            assert secret not in text


def our_log_text(caplog) -> str:
    """Every log record except the test server's own (aiosmtpd logs as mail.log)."""
    return "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records if not r.name.startswith("mail."))


# -- delivering -----------------------------------------------------------------------------------


def test_plain_smtp_delivers_a_multipart_message():
    with SMTPTestServer() as server:
        result = smtp(server, security="none").send(make_message())
    assert result.status == "sent"
    assert result.where == f"{server.host}:{server.port}"
    assert result.smtp_response == "250 2.0.0 Ok: queued as TEST0001"
    assert result.refused == {} and result.recipients == ("ana@example.com",)
    assert result.message_id == "<digest-1@hitcraft.test>"
    [got] = server.messages
    assert got.mail_from == "reports@localhost" and got.rcpt_tos == ["ana@example.com"]
    assert not got.tls and got.authenticated_as is None
    m = got.message
    assert m["From"] == DEFAULT_SENDER and m["Message-ID"] == "<digest-1@hitcraft.test>" and m["Date"]
    assert m.get_content_type() == "multipart/alternative"
    assert m.get_body(("plain",)).get_content().strip() == "Three insights today."
    assert "<p>Three insights today.</p>" in m.get_body(("html",)).get_content()


def test_starttls_with_auth_trusting_the_self_signed_cert(cert):
    with SMTPTestServer(tls="starttls", cert=cert, require_starttls=True, user=USER, password=PASSWORD,
                        auth_required=True) as server:
        resource = smtp(server, security="starttls", user=USER, password=PASSWORD, ca_file=str(cert.cert_path),
                        sender="HitCraft <digest@hitcraft.test>")
        result = resource.send(make_message())
    assert result.status == "sent" and result.smtp_response.startswith("250 ")
    [got] = server.messages
    assert got.tls and got.authenticated_as == USER
    assert got.mail_from == "digest@hitcraft.test"
    assert [(a.mechanism, a.success) for a in server.auth_attempts] == [("PLAIN", True)]


def test_implicit_tls_with_auth(cert):
    with SMTPTestServer(tls="ssl", cert=cert, user=USER, password=PASSWORD, auth_required=True) as server:
        result = smtp(server, security="ssl", user=USER, password=PASSWORD, ca_file=str(cert.cert_path)).send(
            make_message())
    assert result.status == "sent"
    [got] = server.messages
    assert got.tls and got.authenticated_as == USER


def test_login_only_when_a_user_is_set(cert):
    with SMTPTestServer(tls="starttls", cert=cert, user=USER, password=PASSWORD) as server:
        smtp(server, security="starttls", ca_file=str(cert.cert_path)).send(make_message())
    assert server.auth_attempts == [] and server.messages[0].authenticated_as is None


def test_a_server_that_requires_auth_without_a_user_set_is_an_auth_error(cert):
    with SMTPTestServer(tls="starttls", cert=cert, user=USER, password=PASSWORD, auth_required=True) as server:
        with pytest.raises(SMTPPermanentError) as err:
            smtp(server, security="starttls", ca_file=str(cert.cert_path)).send(make_message())
    assert (err.value.code, err.value.smtp_code) == ("SMTP_AUTH", 530)
    assert "HITCRAFT_SMTP_USER" in err.value.message and server.messages == []


# -- TLS is verified ------------------------------------------------------------------------------


@pytest.mark.parametrize("trust", ["system", "another_cert", "wrong_host"])
def test_starttls_refuses_an_untrusted_certificate(tmp_path, cert, trust):
    server_cert, ca_file = cert, None
    if trust == "another_cert":
        ca_file = str(make_self_signed_cert(tmp_path, name="other").cert_path)
    elif trust == "wrong_host":  # trusted, but issued for another name than the one we connect to
        server_cert = make_self_signed_cert(tmp_path, dns_names=["mail.example.com"], ips=[], name="elsewhere")
        ca_file = str(server_cert.cert_path)
    with SMTPTestServer(tls="starttls", cert=server_cert, user=USER, password=PASSWORD) as server:
        with pytest.raises(SMTPPermanentError) as err:
            smtp(server, security="starttls", user=USER, password=PASSWORD, ca_file=ca_file).send(make_message())
    assert err.value.code == "SMTP_TLS"
    assert "not trusted" in err.value.message
    assert ("mismatch" in err.value.message) == (trust == "wrong_host")
    assert server.messages == [] and server.auth_attempts == []


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
def test_a_certificate_made_by_the_openssl_command_works_too(tmp_path):
    cert = make_self_signed_cert(tmp_path, backend="openssl")
    with SMTPTestServer(tls="starttls", cert=cert) as server:
        smtp(server, security="starttls", ca_file=str(cert.cert_path)).send(make_message())
    assert server.messages[0].tls


def test_starttls_is_never_downgraded_to_plain_text():
    with SMTPTestServer(user=USER, password=PASSWORD) as server:  # no STARTTLS on offer
        with pytest.raises(SMTPPermanentError) as err:
            smtp(server, security="starttls", user=USER, password=PASSWORD).send(make_message())
    assert err.value.code == "SMTP_TLS" and "does not offer STARTTLS" in err.value.message
    assert server.messages == [] and server.auth_attempts == []


def test_implicit_tls_against_a_plain_port_is_a_tls_error():
    with SMTPTestServer() as server:
        with pytest.raises(SMTPPermanentError) as err:
            smtp(server, security="ssl").send(make_message())
    assert err.value.code == "SMTP_TLS" and "security=ssl" in err.value.message


# -- failures and their classes -------------------------------------------------------------------


def test_wrong_password_is_permanent_and_the_reply_is_redacted(cert, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    with SMTPTestServer(tls="starttls", cert=cert, user=USER, password="the-right-one",
                        echo_credentials=True) as server:
        with pytest.raises(SMTPPermanentError) as err:
            smtp(server, security="starttls", user=USER, password=PASSWORD, ca_file=str(cert.cert_path)).send(
                make_message())
    e = err.value
    assert (e.code, e.smtp_code) == ("SMTP_AUTH", 535)
    assert "HITCRAFT_SMTP_PASSWORD" in e.message and "***" in e.message
    assert e.__cause__ is None and e.__context__ is None
    # the exchange really carried the password (the careless server quoted it back) ...
    assert server.auth_attempts and not any(a.success for a in server.auth_attempts)
    # ... and none of its forms reached our exception, our logs or the terminal
    out, errout = capfd.readouterr()
    assert_no_secret(str(e), repr(e), e.message, our_log_text(caplog), out, errout)
    assert server.messages == []


def test_the_password_is_in_no_repr_log_or_metadata(cert, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    with SMTPTestServer(tls="starttls", cert=cert, user=USER, password=PASSWORD,
                        rejected={"gone@example.com"}) as server:
        resource = smtp(server, security="starttls", user=USER, password=PASSWORD, ca_file=str(cert.cert_path))
        result = resource.send(make_message())
        with pytest.raises(SMTPRecipientRefused) as refused:
            resource.send(make_message("gone@example.com", "<digest-2@hitcraft.test>"))
    out, errout = capfd.readouterr()
    described = resource.describe()
    assert described["auth"] is True and described["user"] == USER and described["port"] == server.port
    assert_no_secret(repr(resource), str(resource), json.dumps(described), repr(result), str(refused.value),
                     repr(refused.value), our_log_text(caplog), out, errout)
    assert "sent via" in our_log_text(caplog)


def test_connection_refused_is_transient():
    port = free_port()
    with pytest.raises(SMTPTransientError) as err:
        SMTPResource(host="127.0.0.1", port=port, security="none", timeout_s=2).send(make_message())
    assert err.value.code == "SMTP_CONNECT" and err.value.retryable
    assert "ConnectionRefusedError" in err.value.message and f"127.0.0.1:{port}" in err.value.message


def test_smtp_down_then_up_again():
    with SMTPTestServer() as server:
        resource = smtp(server, security="none")
        assert resource.send(make_message(message_id="<a@t>")).status == "sent"
        server.stop()
        with pytest.raises(SMTPTransientError) as err:
            resource.send(make_message(message_id="<b@t>"))
        assert err.value.code == "SMTP_CONNECT"
        server.start()  # same port
        assert resource.send(make_message(message_id="<b@t>")).status == "sent"
    assert [m.message["Message-ID"] for m in server.messages] == ["<a@t>", "<b@t>"]


@pytest.fixture
def silent_listener():
    """A TCP port that accepts connections (the kernel's backlog) and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


def test_a_silent_server_times_out_as_transient(silent_listener):
    with pytest.raises(SMTPTransientError) as err:
        SMTPResource(host="127.0.0.1", port=silent_listener, security="none", timeout_s=0.3).send(make_message())
    assert err.value.code == "SMTP_TIMEOUT" and "0.3 s" in err.value.message


@pytest.fixture
def canned_server():
    """start(greeting) -> port of a server that sends `greeting` to each connection and hangs up."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)
    stop = threading.Event()
    greeting = {"bytes": b""}

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(greeting["bytes"])

    thread = threading.Thread(target=serve, daemon=True)

    def start(line: bytes) -> int:
        greeting["bytes"] = line
        thread.start()
        return listener.getsockname()[1]

    yield start
    stop.set()
    if thread.is_alive():
        thread.join()
    listener.close()


@pytest.mark.parametrize(("greeting", "error", "code", "smtp_code"), [
    (b"", SMTPTransientError, "SMTP_DISCONNECTED", None),
    (b"421 4.3.2 too busy, come back later\r\n", SMTPTransientError, "SMTP_TEMPORARY", 421),
    (b"554 5.7.1 no mail from you\r\n", SMTPPermanentError, "SMTP_REJECTED", 554),
])
def test_a_greeting_that_is_not_220(canned_server, greeting, error, code, smtp_code):
    port = canned_server(greeting)
    with pytest.raises(error) as err:
        SMTPResource(host="127.0.0.1", port=port, security="none", timeout_s=2).send(make_message())
    assert (err.value.code, err.value.smtp_code) == (code, smtp_code)
    assert type(err.value) is error


def test_a_refused_recipient_does_not_stop_the_others():
    with SMTPTestServer(rejected={"gone@example.com"}) as server:
        resource = smtp(server, security="none")
        with pytest.raises(SMTPRecipientRefused) as err:
            resource.send(make_message("gone@example.com", "<to-gone@t>"))
        ok = resource.send(make_message("ana@example.com", "<to-ana@t>"))
    e = err.value
    assert e.code == "SMTP_RECIPIENT_REFUSED" and not e.retryable and e.smtp_code == 550
    assert list(e.refused) == ["gone@example.com"] and e.refused["gone@example.com"][0] == 550
    assert "user unknown" in e.refused["gone@example.com"][1]
    assert ok.status == "sent"
    assert [m.rcpt_tos for m in server.messages] == [["ana@example.com"]]


def test_some_recipients_refused_is_a_send_with_the_refused_listed():
    with SMTPTestServer(rejected={"gone@example.com"}) as server:
        result = smtp(server, security="none").send(make_message(["ana@example.com", "gone@example.com"]))
    assert result.status == "sent"
    assert list(result.refused) == ["gone@example.com"] and result.refused["gone@example.com"][0] == 550
    assert server.messages[0].rcpt_tos == ["ana@example.com"]


def test_a_4xx_recipient_reply_is_transient():
    with SMTPTestServer(deferred={"busy@example.com"}) as server:
        with pytest.raises(SMTPTransientError) as err:
            smtp(server, security="none").send(make_message("busy@example.com"))
    assert err.value.code == "SMTP_RECIPIENT_DEFERRED" and err.value.smtp_code == 451
    assert server.messages == []


def test_a_message_without_recipients_is_refused_before_connecting():
    msg = make_message()
    del msg["To"]
    with pytest.raises(SMTPPermanentError) as err:
        SMTPResource(host="127.0.0.1", port=free_port(), security="none").send(msg)
    assert err.value.code == "SMTP_MESSAGE"


# -- the outbox -----------------------------------------------------------------------------------


def test_outbox_writes_a_parseable_eml_once_per_message_id(tmp_path):
    outbox = tmp_path / "outbox"
    resource = SMTPResource(outbox_dir=str(outbox))
    first = resource.send(make_message(body="first version"))
    again = resource.send(make_message(body="a retry renders it again"))
    assert first.status == again.status == "outbox"
    assert first.where == again.where == str(outbox / "digest-1@hitcraft.test.eml")
    assert not first.duplicate and again.duplicate
    assert sorted(p.name for p in outbox.iterdir()) == ["digest-1@hitcraft.test.eml"]  # no temporary files left
    raw = Path(first.where).read_bytes()
    assert b"\r\n" in raw
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert parsed["Message-ID"] == "<digest-1@hitcraft.test>" and parsed["To"] == "ana@example.com"
    assert parsed["From"] == DEFAULT_SENDER
    assert parsed.get_body(("plain",)).get_content().strip() == "first version"


def test_outbox_is_the_default_without_a_host(monkeypatch, tmp_path):
    monkeypatch.setenv("HITCRAFT_DATA_DIR", str(tmp_path / "data"))
    result = SMTPResource().send(make_message(message_id=None))
    path = Path(result.where)
    assert path.parent == tmp_path / "data" / "outbox"
    assert path.name == safe_message_id(result.message_id) + ".eml"
    assert SMTPResource().describe() == {"mode": "outbox", "outbox_dir": str(tmp_path / "data" / "outbox"),
                                         "sender": DEFAULT_SENDER}


@pytest.mark.parametrize(("message_id", "name"), [
    ("<digest-1@hitcraft.test>", "digest-1@hitcraft.test"),
    ("<a/b\\c d@x>", "a_b_c_d@x-"),
    ("<../../etc/passwd@x>", "_.._etc_passwd@x-"),
])
def test_safe_message_id(message_id, name):
    safe = safe_message_id(message_id)
    assert safe.startswith(name) and "/" not in safe and not safe.startswith(".")
    assert safe_message_id(message_id) == safe


def test_ids_that_sanitize_alike_get_different_files():
    assert safe_message_id("<a/b@x>") != safe_message_id("<a_b@x>")
    assert len(safe_message_id("<" + "x" * 500 + "@y>")) < 200


# -- settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("security", "port"), [("starttls", 587), ("ssl", 465), ("none", 25), ("STARTTLS", 587)])
def test_port_defaults_by_security(security, port):
    described = SMTPResource(host="mail.example.com", security=security).describe()
    assert described["port"] == port and described["security"] == security.lower()
    assert described["auth"] is False


@pytest.mark.parametrize(("settings", "words"), [
    ({"security": "tls"}, "HITCRAFT_SMTP_SECURITY"),
    ({"port": 0}, "HITCRAFT_SMTP_PORT"),
    ({"sender": "HitCraft reports"}, "HITCRAFT_EMAIL_FROM"),
    ({"password": PASSWORD}, "without a user"),
    ({"ca_file": "/nonexistent/ca.pem"}, "ca_file"),
    ({"timeout_s": 0}, "timeout_s"),
])
def test_bad_settings_fail_with_smtp_config(settings, words):
    resource = SMTPResource(host="mail.example.com", **settings)
    with pytest.raises(SMTPConfigError) as err:
        resource.send(make_message())
    assert err.value.code == "SMTP_CONFIG" and words in err.value.message
    assert isinstance(err.value, SMTPPermanentError)
    assert_no_secret(str(err.value))


# -- as a Dagster resource ------------------------------------------------------------------------


def test_sends_from_a_dagster_asset_with_the_password_from_an_env_var(cert, monkeypatch):
    monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)

    @dg.asset
    def digest_email(smtp: SMTPResource) -> dg.MaterializeResult:
        result = smtp.send(make_message())
        return dg.MaterializeResult(metadata={**smtp.describe(), "status": result.status,
                                              "smtp_response": result.smtp_response})

    with SMTPTestServer(tls="starttls", cert=cert, user=USER, password=PASSWORD) as server:
        monkeypatch.setenv("TEST_SMTP_PORT", str(server.port))
        resource = SMTPResource(host=server.host, port=dg.EnvVar.int("TEST_SMTP_PORT"), user=USER,
                                password=dg.EnvVar("TEST_SMTP_PASSWORD"), ca_file=str(cert.cert_path),
                                local_hostname="localhost")
        with dg.instance_for_test() as instance:
            run = dg.materialize([digest_email], resources={"smtp": resource}, instance=instance)
            assert run.success
            records = instance.get_records_for_run(run.run_id).records
            logged = json.dumps([dg.serialize_value(r.event_log_entry) for r in records])
    assert server.messages[0].authenticated_as == USER
    [mat] = run.asset_materializations_for_node("digest_email")
    assert mat.metadata["status"].value == "sent" and mat.metadata["security"].value == "starttls"
    assert "starttls" in logged and "smtp_response" in logged
    assert_no_secret(logged, repr(resource))


def test_errors_share_a_base_with_a_code():
    for cls in (SMTPTransientError, SMTPRecipientRefused, SMTPPermanentError, SMTPConfigError):
        assert issubclass(cls, SMTPError) and cls("x").code == cls.default_code
    assert SMTPTransientError.retryable and not SMTPPermanentError.retryable
    assert not issubclass(SMTPRecipientRefused, SMTPPermanentError)
    assert os.environ.get("HITCRAFT_SMTP_PASSWORD") is None  # the suite never reads a real one
