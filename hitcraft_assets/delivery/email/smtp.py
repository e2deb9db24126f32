"""Sending one email: ``SMTPResource`` (the Dagster face of ``smtplib``) or, with no SMTP host, an outbox folder.

``send(msg)`` delivers one ``EmailMessage`` and returns a ``SendResult``; every failure comes out as one of
three exceptions with a stable ``code``, so the caller knows what to do next:

- ``SMTPTransientError`` (``retryable = True``): connection refused or reset, DNS failure, timeout, the
  server hanging up, and every 4xx reply (greeting 421, 450/451/452 on MAIL/RCPT/DATA, 454 on AUTH).
  Worth retrying later, e.g. by Dagster's RetryPolicy: nothing was delivered.
- ``SMTPRecipientRefused``: every recipient of the message got a 5xx at RCPT TO (550 no such user...).
  Retrying will not help; record it against that recipient and go on with the others. When only some
  recipients are refused, the message went to the rest: ``send`` returns ``status="sent"`` with the
  refused ones in ``SendResult.refused``.
- ``SMTPPermanentError``: authentication failed (535, or AUTH not offered), TLS failed (certificate not
  trusted, wrong host name, STARTTLS not offered, a TLS handshake on a plain port), any other 5xx (sender
  refused, message refused at DATA, greeting 554), a message that cannot be sent (no recipients), and
  bad settings (``SMTPConfigError``, code ``SMTP_CONFIG``). A person has to fix something.

TLS: ``security`` is ``starttls`` (port 587), ``ssl`` (implicit TLS, port 465) or ``none`` (port 25). The
certificate is always verified, host name included, against the system's trust store or, when
``ca_file`` is set, against that bundle only (a private CA, or a relay's self-signed certificate). There is
no switch to turn verification off, and ``starttls`` never falls back to plain text.

Secrets: the password is not in ``repr``/``str`` of the resource, in ``describe()``, in log lines or in any
exception message (the server's reply is redacted of the password and of the base64 forms AUTH PLAIN and
LOGIN send), and no ``smtplib`` exception is chained onto ours. Pass it as ``dg.EnvVar`` so that the
Dagster UI shows only the variable's name.

Outbox: with ``host`` unset, the message is written to ``<outbox_dir>/<safe Message-ID>.eml`` (CRLF, as it
would go on the wire) through a temporary file and ``os.replace``; a second send of the same Message-ID
leaves the first file alone (``duplicate=True``), so a retried run does not write two copies.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import logging
import os
import re
import smtplib
import socket
import ssl
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from hitcraft_assets import settings

_logger = logging.getLogger(__name__)

SECURITY_MODES = ("starttls", "ssl", "none")
DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
DEFAULT_SENDER = "HitCraft Analytics <reports@localhost>"
AUTH_REPLY_CODES = frozenset({530, 534, 535, 538})
MAX_NAME_CHARS = 150  # of the .eml file name's Message-ID part (file systems allow 255 bytes)


# -- errors --------------------------------------------------------------------------------------


class SMTPError(Exception):
    """Base of every error ``SMTPResource.send`` raises. ``code`` is stable; the message holds no secret.

    ``smtp_code`` is the server's reply code when there was one; ``refused`` maps refused recipients to
    their ``(code, reply)``.
    """

    default_code = "SMTP_ERROR"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        smtp_code: int | None = None,
        refused: dict[str, tuple[int, str]] | None = None,
    ) -> None:
        self.code = code or self.default_code
        self.message = message
        self.smtp_code = smtp_code
        self.refused = dict(refused or {})
        super().__init__(f"[{self.code}] {message}")


class SMTPTransientError(SMTPError):
    """Nothing was delivered, for a reason that may pass (network, timeout, a 4xx reply): retry later.

    Codes: ``SMTP_CONNECT``, ``SMTP_TIMEOUT``, ``SMTP_DISCONNECTED``, ``SMTP_TEMPORARY``,
    ``SMTP_RECIPIENT_DEFERRED``.
    """

    default_code = "SMTP_TEMPORARY"
    retryable = True


class SMTPRecipientRefused(SMTPError):
    """The server refused every recipient of the message with a 5xx: do not retry this recipient.

    Code: ``SMTP_RECIPIENT_REFUSED``.
    """

    default_code = "SMTP_RECIPIENT_REFUSED"


class SMTPPermanentError(SMTPError):
    """Retrying will not help until someone fixes the settings, the credentials or the message.

    Codes: ``SMTP_AUTH``, ``SMTP_TLS``, ``SMTP_REJECTED``, ``SMTP_MESSAGE``, ``SMTP_OUTBOX``,
    ``SMTP_CONFIG`` (``SMTPConfigError``).
    """

    default_code = "SMTP_REJECTED"


class SMTPConfigError(SMTPPermanentError):
    """The settings cannot work: unknown ``security``, bad port, sender without an address, missing CA file."""

    default_code = "SMTP_CONFIG"


# -- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    """One message handed over. ``where`` is ``host:port`` (sent) or the ``.eml`` path (outbox);
    ``smtp_response`` is the server's reply to DATA (often with its queue id); ``refused`` holds the
    recipients the server refused while accepting the others; ``duplicate`` is True when the outbox
    already held this Message-ID and nothing was written."""

    status: Literal["sent", "outbox"]
    where: str
    smtp_response: str | None
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)
    message_id: str = ""
    recipients: tuple[str, ...] = ()
    duplicate: bool = False


@dataclass(frozen=True)
class _Settings:
    host: str | None
    port: int
    security: str
    user: str | None
    password: str | None
    sender: str
    outbox_dir: Path
    timeout_s: float
    ca_file: str | None
    local_hostname: str | None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


# -- the resource --------------------------------------------------------------------------------


class SMTPResource(dg.ConfigurableResource):
    """Email delivery over SMTP (``HITCRAFT_SMTP_*``, ``HITCRAFT_EMAIL_FROM``); with no host, an outbox folder.

    ``port`` defaults by ``security``: 587 for ``starttls``, 465 for ``ssl``, 25 for ``none``. Login happens
    only when ``user`` is set. ``ca_file`` replaces the system trust store for this server (verification
    stays on). ``local_hostname`` is the EHLO name (default: this machine's FQDN).
    """

    host: str | None = Field(default=None, description="SMTP server; unset: write .eml files to outbox_dir")
    port: int | None = Field(default=None, description="default by security: 587 starttls, 465 ssl, 25 none")
    user: str | None = Field(default=None, description="login name; unset: no AUTH")
    password: str | None = Field(default=None, repr=False, description="login password (use an EnvVar)")
    security: str = Field(default="starttls", description="starttls | ssl | none")
    sender: str = Field(default=DEFAULT_SENDER, description="From: when the message has none (HITCRAFT_EMAIL_FROM)")
    outbox_dir: str | None = Field(default=None, description="default: data/outbox")
    timeout_s: float = Field(default=30.0, description="timeout of every socket operation")
    ca_file: str | None = Field(default=None, description="PEM bundle to trust instead of the system's")
    local_hostname: str | None = Field(default=None, description="EHLO name; default: the machine's FQDN")

    # -- settings ----------------------------------------------------------------------------

    def _settings(self) -> _Settings:
        security = (self.security or "starttls").strip().lower()
        if security not in SECURITY_MODES:
            raise SMTPConfigError(
                f"security (HITCRAFT_SMTP_SECURITY) must be one of {', '.join(SECURITY_MODES)}; got {self.security!r}"
            )
        host = (self.host or "").strip() or None
        port = DEFAULT_PORTS[security] if self.port is None else self.port
        if not isinstance(port, int) or not 0 < port < 65536:
            raise SMTPConfigError(f"port (HITCRAFT_SMTP_PORT) must be 1-65535; got {self.port!r}")
        if not self.timeout_s > 0:
            raise SMTPConfigError(f"timeout_s must be > 0; got {self.timeout_s!r}")
        user = self.user or None
        if self.password and not user:
            raise SMTPConfigError("a password (HITCRAFT_SMTP_PASSWORD) is set without a user (HITCRAFT_SMTP_USER)")
        sender = (self.sender or "").strip() or DEFAULT_SENDER
        _, sender_address = email.utils.parseaddr(sender)
        if "@" not in sender_address:
            raise SMTPConfigError(f"sender (HITCRAFT_EMAIL_FROM) has no email address: {sender!r}")
        ca_file = self.ca_file or None
        if ca_file and not Path(ca_file).is_file():
            raise SMTPConfigError(f"ca_file {ca_file!r} does not exist")
        outbox = Path(self.outbox_dir) if self.outbox_dir else settings.data_dir() / "outbox"
        return _Settings(
            host=host, port=port, security=security, user=user, password=self.password or None,
            sender=sender, outbox_dir=outbox, timeout_s=float(self.timeout_s), ca_file=ca_file,
            local_hostname=self.local_hostname or None,
        )

    def describe(self) -> dict[str, Any]:
        """A summary safe for Dagster metadata and logs; never the password."""
        s = self._settings()
        if s.host is None:
            return {"mode": "outbox", "outbox_dir": str(s.outbox_dir), "sender": s.sender}
        return {
            "mode": "smtp",
            "host": s.host,
            "port": s.port,
            "security": s.security,
            "user": s.user,
            "auth": s.user is not None,
            "ca_file": s.ca_file,
            "sender": s.sender,
            "timeout_s": s.timeout_s,
        }

    # -- sending -----------------------------------------------------------------------------

    def send(self, msg: EmailMessage, *, log: logging.Logger | None = None) -> SendResult:
        """Deliver ``msg`` (or write it to the outbox). Adds ``From`` (the sender), ``Date`` and
        ``Message-ID`` when missing; the recipients are its To, Cc and Bcc. Raises an ``SMTPError``."""
        log = log or _logger
        s = self._settings()
        message_id = _prepare(msg, s.sender)
        recipients = _recipients(msg)
        if not recipients:
            raise SMTPPermanentError(f"message {message_id} has no recipient (To, Cc or Bcc)", code="SMTP_MESSAGE")
        if s.host is None:
            return _to_outbox(msg, s.outbox_dir, message_id, recipients, log)
        return _Sender(s, log).send(msg, message_id, recipients)


# -- helpers -------------------------------------------------------------------------------------


def _prepare(msg: EmailMessage, sender: str) -> str:
    if msg["From"] is None:
        msg["From"] = sender
    if msg["Date"] is None:
        msg["Date"] = email.utils.format_datetime(datetime.now(timezone.utc))
    if msg["Message-ID"] is None:
        domain = email.utils.parseaddr(sender)[1].rpartition("@")[2] or "localhost"
        msg["Message-ID"] = email.utils.make_msgid(domain=domain)
    return str(msg["Message-ID"]).strip()


def _recipients(msg: EmailMessage) -> tuple[str, ...]:
    values = [str(v) for name in ("To", "Cc", "Bcc") for v in msg.get_all(name, [])]
    return tuple(addr for _, addr in email.utils.getaddresses(values) if addr)


def safe_message_id(message_id: str) -> str:
    """A file name for a Message-ID: ``<a.b@host>`` -> ``a.b@host``; other characters become ``_`` and, when
    anything had to change, a hash of the original id keeps two ids from sharing a name."""
    bare = message_id.strip().strip("<>").strip()
    safe = re.sub(r"[^A-Za-z0-9._@+=-]", "_", bare).lstrip(".")
    if safe != bare or len(safe) > MAX_NAME_CHARS or not safe:
        digest = hashlib.sha256(message_id.strip().encode()).hexdigest()[:12]
        safe = f"{safe[:MAX_NAME_CHARS]}-{digest}" if safe else digest
    return safe


def _to_outbox(
    msg: EmailMessage, outbox: Path, message_id: str, recipients: tuple[str, ...], log: logging.Logger
) -> SendResult:
    path = outbox / f"{safe_message_id(message_id)}.eml"
    if path.exists():
        log.info(f"smtp outbox: {message_id} is already in {path}; not written again")
        return SendResult("outbox", str(path), None, {}, message_id, recipients, duplicate=True)
    tmp: str | None = None
    try:
        outbox.mkdir(parents=True, exist_ok=True)
        data = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
        fd, tmp = tempfile.mkstemp(dir=outbox, prefix=f".{path.stem[:40]}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise SMTPPermanentError(f"cannot write {path}: {type(e).__name__}: {e}", code="SMTP_OUTBOX") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    log.info(f"smtp outbox: {message_id} for {len(recipients)} recipient(s) written to {path}")
    return SendResult("outbox", str(path), None, {}, message_id, recipients)


class _DataReply:
    """Keeps the server's reply to DATA, which ``smtplib.SMTP.sendmail`` checks and then drops."""

    data_reply: tuple[int, bytes] | None = None

    def data(self, msg):  # type: ignore[no-untyped-def]
        code, reply = super().data(msg)  # type: ignore[misc]
        self.data_reply = (code, reply)
        return code, reply


class _SMTP(_DataReply, smtplib.SMTP):
    pass


class _SMTP_SSL(_DataReply, smtplib.SMTP_SSL):
    pass


def _text(reply: bytes | str | None) -> str:
    if reply is None:
        return ""
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", errors="replace")
    return " ".join(reply.split())[:300]


class _Sender:
    """One SMTP conversation for one message."""

    def __init__(self, s: _Settings, log: logging.Logger) -> None:
        self.s = s
        self.log = log

    def _secrets(self) -> list[str]:
        """The password and the base64 forms AUTH PLAIN and AUTH LOGIN put on the wire."""
        password = self.s.password
        if not password:
            return []
        user = self.s.user or ""
        forms = [
            password,
            base64.b64encode(password.encode()).decode(),
            base64.b64encode(f"\0{user}\0{password}".encode()).decode(),
            base64.b64encode(f"{user}\0{user}\0{password}".encode()).decode(),
        ]
        return [f for f in forms if len(f) >= 4]

    def _redact(self, text: str) -> str:
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return text

    def _context(self) -> ssl.SSLContext:
        """Certificate and host name verified; the CA file, if any, is the only trust anchor."""
        try:
            ctx = ssl.create_default_context(cafile=self.s.ca_file)
        except (OSError, ssl.SSLError) as e:
            raise SMTPConfigError(f"ca_file {self.s.ca_file!r} is not a PEM certificate bundle: {e}") from None
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def send(self, msg: EmailMessage, message_id: str, recipients: tuple[str, ...]) -> SendResult:
        s = self.s
        if s.user and s.security == "none":
            self.log.warning(f"smtp: logging in to {s.where} without TLS (security=none): "
                             "the password crosses the network in clear")
        ctx = self._context() if s.security != "none" else None
        smtp: smtplib.SMTP | None = None
        phase = "connect"
        failure: SMTPError | None = None
        try:
            if s.security == "ssl":
                smtp = _SMTP_SSL(s.host, s.port, local_hostname=s.local_hostname, timeout=s.timeout_s, context=ctx)
            else:
                smtp = _SMTP(s.host, s.port, local_hostname=s.local_hostname, timeout=s.timeout_s)
            phase = "ehlo"
            smtp.ehlo_or_helo_if_needed()
            if s.security == "starttls":
                phase = "starttls"
                smtp.starttls(context=ctx)  # raises unless the server offers it: never a silent plain-text send
                smtp.ehlo_or_helo_if_needed()
            if s.user:
                phase = "auth"
                smtp.login(s.user, s.password or "")
            phase = "send"
            refused_raw = smtp.send_message(msg)
            reply = smtp.data_reply
        except Exception as e:  # noqa: BLE001 -- every failure is classified; raised outside: nothing chained
            failure = self._classify(e, phase)
        finally:
            if smtp is not None:
                _close(smtp, polite=failure is None)
        if failure is not None:
            self.log.warning(f"smtp: {message_id} via {s.where} failed: {failure}")
            raise failure
        refused = {addr: (int(code), self._redact(_text(text))) for addr, (code, text) in refused_raw.items()}
        response = f"{reply[0]} {self._redact(_text(reply[1]))}" if reply else None
        self.log.info(
            f"smtp: {message_id} sent via {s.where} ({s.security}) to {len(recipients) - len(refused)} of "
            f"{len(recipients)} recipient(s): {response}"
        )
        if refused:
            self.log.warning(f"smtp: {message_id}: refused recipients {refused}")
        return SendResult("sent", s.where, response, refused, message_id, recipients)

    def _classify(self, e: Exception, phase: str) -> SMTPError:
        """One exception of smtplib, ssl or socket -> our error, with a redacted message."""
        where, r = self.s.where, self._redact
        if isinstance(e, smtplib.SMTPRecipientsRefused):
            refused = {addr: (int(code), r(_text(text))) for addr, (code, text) in e.recipients.items()}
            listed = "; ".join(f"{addr}: {code} {text}" for addr, (code, text) in refused.items())
            if all(code >= 500 for code, _ in refused.values()):
                return SMTPRecipientRefused(f"{where} refused every recipient: {listed}", refused=refused,
                                            smtp_code=max(c for c, _ in refused.values()))
            return SMTPTransientError(f"{where} deferred recipients: {listed}", code="SMTP_RECIPIENT_DEFERRED",
                                      refused=refused, smtp_code=min(c for c, _ in refused.values()))
        if isinstance(e, smtplib.SMTPResponseException):  # connect, HELO, AUTH, MAIL, DATA replies
            code, text = int(e.smtp_code), r(_text(e.smtp_error))
            what = {"connect": "greeting", "ehlo": "EHLO", "starttls": "STARTTLS", "auth": "AUTH",
                    "send": "MAIL/DATA"}.get(phase, phase)
            if isinstance(e, smtplib.SMTPSenderRefused):
                what = f"MAIL FROM {e.sender}"
            elif isinstance(e, smtplib.SMTPDataError):
                what = "DATA"
            if 400 <= code < 500:
                return SMTPTransientError(f"{where} answered {what} with {code} {text}", code="SMTP_TEMPORARY",
                                          smtp_code=code)
            if phase == "auth":
                return SMTPPermanentError(
                    f"{where} refused the login of user {self.s.user!r}: {code} {text} "
                    "(check HITCRAFT_SMTP_USER / HITCRAFT_SMTP_PASSWORD)", code="SMTP_AUTH", smtp_code=code)
            if code in AUTH_REPLY_CODES:  # 530 authentication required, 534/538 mechanism or encryption needed
                hint = "set HITCRAFT_SMTP_USER and HITCRAFT_SMTP_PASSWORD" if not self.s.user else "check the login"
                return SMTPPermanentError(f"{where} answered {what} with {code} {text} ({hint})", code="SMTP_AUTH",
                                          smtp_code=code)
            if phase == "starttls":
                return SMTPPermanentError(f"{where} refused STARTTLS: {code} {text}", code="SMTP_TLS", smtp_code=code)
            return SMTPPermanentError(f"{where} answered {what} with {code} {text}", code="SMTP_REJECTED",
                                      smtp_code=code)
        if isinstance(e, smtplib.SMTPServerDisconnected) and isinstance(e.__context__, TimeoutError):
            e = e.__context__  # smtplib reports a read timeout as "Connection unexpectedly closed: timed out"
        elif isinstance(e, smtplib.SMTPServerDisconnected):
            return SMTPTransientError(f"{where} closed the connection during {phase}: {r(_text(str(e)))}",
                                      code="SMTP_DISCONNECTED")
        if isinstance(e, smtplib.SMTPException):  # SMTPNotSupportedError, "No suitable authentication method"
            text = r(_text(str(e)))
            if phase == "starttls":
                return SMTPPermanentError(
                    f"{where} does not offer STARTTLS ({text}); not sending in clear: set security=none only for "
                    "a relay that has no TLS, or security=ssl for an implicit-TLS port", code="SMTP_TLS")
            if phase == "auth":
                return SMTPPermanentError(f"cannot log in to {where}: {text}", code="SMTP_AUTH")
            return SMTPPermanentError(f"{where} during {phase}: {text}", code="SMTP_REJECTED")
        if isinstance(e, ssl.SSLCertVerificationError):
            return SMTPPermanentError(
                f"the TLS certificate of {where} is not trusted: {r(_text(e.verify_message or str(e)))} "
                "(set ca_file to the CA bundle or the server's certificate; verification is never turned off)",
                code="SMTP_TLS")
        if isinstance(e, ssl.SSLError):
            return SMTPPermanentError(
                f"TLS with {where} failed during {phase}: {r(_text(e.reason or str(e)))} (does the port match "
                f"security={self.s.security}? 465 is implicit TLS, 587 STARTTLS)", code="SMTP_TLS")
        if isinstance(e, (socket.timeout, TimeoutError)):
            hint = " (port 465 expects security=ssl)" if self.s.port == 465 and self.s.security != "ssl" else ""
            return SMTPTransientError(f"{where} timed out after {self.s.timeout_s:g} s during {phase}{hint}",
                                      code="SMTP_TIMEOUT")
        if isinstance(e, socket.gaierror):
            return SMTPTransientError(f"cannot resolve {self.s.host!r}: {r(_text(str(e)))}", code="SMTP_CONNECT")
        if isinstance(e, OSError):  # refused, reset, unreachable
            return SMTPTransientError(f"cannot talk to {where} during {phase}: {type(e).__name__}: {r(_text(str(e)))}",
                                      code="SMTP_CONNECT")
        if isinstance(e, (ValueError, TypeError, UnicodeError)):  # send_message: no recipients, bad headers
            return SMTPPermanentError(f"the message cannot be sent: {type(e).__name__}: {r(_text(str(e)))}",
                                      code="SMTP_MESSAGE")
        return SMTPPermanentError(f"{where} during {phase}: {type(e).__name__}: {r(_text(str(e)))}",
                                  code="SMTP_REJECTED")


def _close(smtp: smtplib.SMTP, *, polite: bool) -> None:
    """QUIT after a success; after a failure just close the socket (the server may be gone)."""
    try:
        if polite:
            smtp.quit()
            return
    except (smtplib.SMTPException, OSError):
        pass
    smtp.close()
