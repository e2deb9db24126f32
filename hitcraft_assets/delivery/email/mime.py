"""A rendered digest as one MIME message, ready for SMTP (:func:`build_message`).

Structure (what every client understands, and what shows the images inline rather than as attachments)::

    multipart/alternative
    ├── text/plain; charset=utf-8
    └── multipart/related
        ├── text/html; charset=utf-8
        └── image/png   Content-ID: <kpi-1@hitcraft>   Content-Disposition: inline; filename="kpi-1.png"
            ...

Without images (``charts=False``, or nothing to draw) the HTML part sits directly in the alternative.

Headers: From, To (display name RFC 2047-encoded when it is not ASCII), Subject, Date (RFC 5322), the given
Message-ID (deterministic, chosen by the caller so that a retry is recognisably the same message),
MIME-Version, ``List-Unsubscribe`` with ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058,
which Gmail and Yahoo require of bulk senders; only for an https link), ``Auto-Submitted: auto-generated`` (RFC 3834) and
``X-Auto-Response-Suppress: All`` (no out-of-office replies from Exchange).

The message uses ``email.policy.SMTP`` (CRLF line ends, headers folded at 78; see :class:`DigestPolicy` for
the one exception). Text parts are quoted-printable: css-inline writes lines far longer than SMTP's
998-character limit, and QP keeps non-ASCII text 7-bit clean for servers without 8BITMIME.
"""

from __future__ import annotations

import email.policy
import email.utils
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage

from hitcraft_assets.delivery.model import RenderedEmail


class DigestPolicy(email.policy.EmailPolicy):
    """``email.policy.SMTP`` except for ``List-Unsubscribe``: the standard folder turns a URL longer than a line
    (a signed token easily is) into RFC 2047 encoded words, which no client reads as a link. Here the header
    is written as given, folded only between its ``<...>`` entries (RFC 2369 allows that; a line may be 998
    characters)."""

    def fold(self, name, value):
        if name.lower() == "list-unsubscribe":
            entries = [e.strip() for e in str(value).split(",")]
            return f"{name}: " + f",{self.linesep} ".join(entries) + self.linesep
        return super().fold(name, value)

    def fold_binary(self, name, value):
        if name.lower() == "list-unsubscribe":
            return self.fold(name, value).encode("ascii")
        return super().fold_binary(name, value)


POLICY = DigestPolicy(linesep="\r\n")     # what email.policy.SMTP is: the default policy with CRLF
# the headers build_message owns; extra_headers may not replace them
OWN_HEADERS = frozenset(h.lower() for h in (
    "From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
    "List-Unsubscribe", "List-Unsubscribe-Post", "Auto-Submitted", "X-Auto-Response-Suppress"))


def build_message(rendered: RenderedEmail, *, sender: str, to: str, to_name: str | None, message_id: str,
                  date: datetime, unsubscribe_url: str, unsubscribe_mailto: str | None = None,
                  extra_headers: dict | None = None) -> EmailMessage:
    """The email for one recipient. `sender` is an address or ``"Name <address>"``; `message_id` is
    ``<left@right>`` (the brackets are added when missing); `date` must carry a timezone;
    `unsubscribe_url` is http(s), and only an https one gets ``List-Unsubscribe-Post`` (RFC 8058 requires
    https for one-click); `unsubscribe_mailto` an address, with or without ``mailto:``."""
    if date.tzinfo is None or date.utcoffset() is None:
        raise ValueError("date must be timezone-aware (an RFC 5322 Date carries its UTC offset)")
    scheme = unsubscribe_url.split(":", 1)[0].lower()
    if scheme not in ("https", "http"):
        raise ValueError(f"List-Unsubscribe needs an http(s) URL, got {unsubscribe_url!r}")
    for link in (unsubscribe_url, unsubscribe_mailto or ""):
        if not link.isascii() or any(c.isspace() or c in "<>," for c in link) or len(link) > 900:
            raise ValueError(f"not usable in List-Unsubscribe (ASCII, no spaces, <, > or commas, "
                             f"at most 900 characters): {link!r}")
    message_id = message_id.strip()
    if not (message_id.startswith("<") and message_id.endswith(">")):
        message_id = f"<{message_id}>"
    if "@" not in message_id or any(c.isspace() for c in message_id):
        raise ValueError(f"not a Message-ID: {message_id!r}")

    msg = EmailMessage(policy=POLICY)
    msg["From"] = sender
    msg["To"] = Address(display_name=to_name, addr_spec=to) if to_name else Address(addr_spec=to)
    msg["Subject"] = rendered.subject
    msg["Date"] = email.utils.format_datetime(date)
    msg["Message-ID"] = message_id
    msg["MIME-Version"] = "1.0"
    links = [f"<{unsubscribe_url}>"]
    if unsubscribe_mailto:
        mailto = unsubscribe_mailto
        if not mailto.lower().startswith("mailto:"):
            mailto = f"mailto:{mailto}"
        links.append(f"<{mailto}>")
    msg["List-Unsubscribe"] = ", ".join(links)
    if scheme == "https":
        # RFC 8058 one-click needs an https URL; a local http one (the default public URL, 127.0.0.1) gets
        # the plain List-Unsubscribe link only
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    for name, value in (extra_headers or {}).items():
        if name.lower() in OWN_HEADERS:
            raise ValueError(f"extra_headers may not set {name}: build_message owns it")
        msg[name] = str(value)

    msg.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    if rendered.images:
        html = msg.get_payload()[1]
        for cid, png in rendered.images.items():
            # add_related turns the text/html part into multipart/related(text/html, image/png ...)
            html.add_related(png, maintype="image", subtype="png", cid=f"<{cid}>", disposition="inline",
                             filename=f"{cid.split('@', 1)[0]}.png")
    return msg
