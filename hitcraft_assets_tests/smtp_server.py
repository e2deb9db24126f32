"""A real SMTP server on 127.0.0.1 (aiosmtpd's threaded ``Controller``), for tests of email delivery.

Tests send through it with the real ``smtplib`` client instead of mocking it, so sockets, STARTTLS,
certificate checks, AUTH and reply codes all run for real.

Quick use::

    from hitcraft_assets_tests.smtp_server import SMTPTestServer, make_self_signed_cert

    cert = make_self_signed_cert(tmp_path)            # for localhost and 127.0.0.1
    with SMTPTestServer(tls="starttls", cert=cert, user="mailer", password="s3cret",
                        rejected={"gone@example.com"}) as server:
        SMTPResource(host=server.host, port=server.port, security="starttls", user="mailer",
                     password="s3cret", ca_file=str(cert.cert_path)).send(msg)
        assert server.messages[0].rcpt_tos == ["ana@example.com"]

Options:

- ``tls``: ``None`` (plain), ``"starttls"`` (advertises STARTTLS; ``require_starttls=True`` refuses
  everything but EHLO/STARTTLS/QUIT before it) or ``"ssl"`` (implicit TLS from the first byte, like
  port 465). Both need ``cert`` (a ``CertPair``).
- ``user`` / ``password``: AUTH PLAIN and LOGIN with these credentials (535 otherwise); every attempt is
  recorded in ``auth_attempts``. ``auth_required=True`` refuses MAIL before a login.
  ``echo_credentials=True`` makes a careless server that quotes the password and its base64 (AUTH PLAIN
  and LOGIN forms) in its 535 reply, to test that the client redacts replies. As aiosmtpd does,
  AUTH is only accepted after STARTTLS unless ``auth_require_tls=False`` (the default for a plain or an
  implicit-TLS server). With ``auth_required=True`` and no STARTTLS, aiosmtpd warns "Requiring AUTH while
  not requiring TLS" on each connection: filter it in the test (``pytest.mark.filterwarnings``).
- ``rejected``: recipients answered ``550 5.1.1`` at RCPT TO; ``deferred``: answered ``451 4.2.0``
  (both sets may be changed while the server runs).
- ``stop()`` closes the listening socket (clients get "connection refused"); ``start()`` listens again on
  the same port, for "SMTP down, then up again".

Each accepted message is a ``Received`` in ``messages``: envelope sender, recipients, the raw bytes, the
parsed ``EmailMessage``, whether the session was under TLS and who had logged in.

``make_self_signed_cert`` writes a throw-away certificate and key (P-256, two days, SAN for the given names)
with the ``cryptography`` package when installed, else with the ``openssl`` command.
"""

from __future__ import annotations

import base64
import datetime as _dt
import importlib.util
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

HOST = "127.0.0.1"


@dataclass(frozen=True)
class CertPair:
    cert_path: Path
    key_path: Path


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage
    tls: bool
    authenticated_as: str | None


@dataclass(frozen=True)
class AuthAttempt:
    mechanism: str
    login: str
    success: bool


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def make_self_signed_cert(
    directory: Path,
    *,
    dns_names: Iterable[str] = ("localhost",),
    ips: Iterable[str] = ("127.0.0.1",),
    name: str = "smtp-test",
    backend: str = "auto",
) -> CertPair:
    """A self-signed certificate (it is its own CA) and its key, as PEM files in ``directory``.

    ``backend``: ``"cryptography"``, ``"openssl"`` (the command) or ``"auto"`` (the package if installed).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    dns_names, ips = list(dns_names), list(ips)
    if backend == "auto":
        backend = "cryptography" if importlib.util.find_spec("cryptography") else "openssl"
    if backend == "cryptography":
        _cryptography_cert(cert_path, key_path, dns_names, ips)
    elif backend == "openssl":
        _openssl_cert(cert_path, key_path, dns_names, ips)
    else:
        raise ValueError(f"backend must be auto, cryptography or openssl, got {backend!r}")
    return CertPair(cert_path, key_path)


def _cryptography_cert(cert_path: Path, key_path: Path, dns_names: list[str], ips: list[str]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (dns_names or ips)[0])])
    now = _dt.datetime.now(_dt.timezone.utc)
    sans = [x509.DNSName(n) for n in dns_names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=False,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _openssl_cert(cert_path: Path, key_path: Path, dns_names: list[str], ips: list[str]) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("neither the cryptography package nor the openssl command is available")
    san = ",".join([f"DNS:{n}" for n in dns_names] + [f"IP:{i}" for i in ips])
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key_path), "-out", str(cert_path), "-days", "2", "-subj", f"/CN={(dns_names or ips)[0]}",
         "-addext", f"subjectAltName={san}", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,digitalSignature,keyCertSign", "-addext", "extendedKeyUsage=serverAuth"],
        check=True, capture_output=True, timeout=30,
    )


def server_context(cert: CertPair) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert.cert_path, cert.key_path)
    return ctx


class _Handler:
    def __init__(self, server: SMTPTestServer) -> None:
        self.server = server

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.server.rejected:
            return f"550 5.1.1 <{address}>: Recipient address rejected: user unknown"
        if address.lower() in self.server.deferred:
            return f"451 4.2.0 <{address}>: mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.content if isinstance(envelope.content, bytes) else envelope.content.encode()
        who = session.auth_data if session.authenticated else None
        received = Received(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            raw=raw,
            message=BytesParser(policy=policy.default).parsebytes(raw),
            tls=server.transport.get_extra_info("ssl_object") is not None,
            authenticated_as=who,
        )
        with self.server.lock:
            self.server.messages.append(received)
            n = len(self.server.messages)
        return f"250 2.0.0 Ok: queued as TEST{n:04d}"


class SMTPTestServer:
    """See the module docstring. Use as a context manager, or call ``start()`` / ``stop()``."""

    def __init__(
        self,
        *,
        tls: str | None = None,
        cert: CertPair | None = None,
        require_starttls: bool = False,
        user: str | None = None,
        password: str | None = None,
        auth_required: bool = False,
        auth_require_tls: bool | None = None,
        echo_credentials: bool = False,
        rejected: Iterable[str] = (),
        deferred: Iterable[str] = (),
        host: str = HOST,
        port: int | None = None,
    ) -> None:
        if tls not in (None, "starttls", "ssl"):
            raise ValueError(f"tls must be None, 'starttls' or 'ssl', got {tls!r}")
        if tls and cert is None:
            raise ValueError("tls needs cert= (make_self_signed_cert)")
        self.tls, self.cert = tls, cert
        self.require_starttls = require_starttls
        self.user, self.password = user, password
        self.auth_required = auth_required
        self.echo_credentials = echo_credentials
        # aiosmtpd counts only STARTTLS as TLS for AUTH; an implicit-TLS session is encrypted from the start
        self.auth_require_tls = (tls == "starttls") if auth_require_tls is None else auth_require_tls
        self.rejected = {a.lower() for a in rejected}
        self.deferred = {a.lower() for a in deferred}
        self.host = host
        self.port = port or free_port(host)
        self.messages: list[Received] = []
        self.auth_attempts: list[AuthAttempt] = []
        self.lock = threading.Lock()
        self._controller: Controller | None = None

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode(errors="replace")
        ok = (self.user is not None and login == self.user
              and auth_data.password.decode(errors="replace") == self.password)
        with self.lock:
            self.auth_attempts.append(AuthAttempt(mechanism, login, ok))
        if ok:  # auth_data is only the login: aiosmtpd logs the AuthResult at DEBUG
            return AuthResult(success=True, auth_data=login)
        if self.echo_credentials:
            password = auth_data.password.decode(errors="replace")
            plain = base64.b64encode(f"\0{login}\0{password}".encode()).decode()
            secret = base64.b64encode(password.encode()).decode()
            return AuthResult(success=False, handled=False,
                              message=f"535 5.7.8 {mechanism} {plain} / {secret} / {password!r} rejected")
        return AuthResult(success=False, handled=False)  # aiosmtpd answers 535 5.7.8

    def start(self) -> SMTPTestServer:
        if self._controller is not None:
            return self
        kwargs: dict = {"server_hostname": "localhost", "ident": "hitcraft-test-smtp"}
        ctx = server_context(self.cert) if self.cert is not None else None
        if self.tls == "starttls":
            kwargs.update(tls_context=ctx, require_starttls=self.require_starttls)
        if self.user is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=self.auth_required,
                          auth_require_tls=self.auth_require_tls)
        controller = Controller(
            _Handler(self), hostname=self.host, port=self.port,
            ssl_context=ctx if self.tls == "ssl" else None, ready_timeout=10, **kwargs,
        )
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        """Close the listener (and open sessions): new connections are refused until ``start()``."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._controller is not None

    def __enter__(self) -> SMTPTestServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
