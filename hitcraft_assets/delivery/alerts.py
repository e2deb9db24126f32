"""The operator alert for a failed run: a short email with the job, the run, the failed steps and their
errors (secrets redacted), and a link to the run in the Dagster UI."""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

# settings whose values must never appear in an alert
SECRET_VARIABLES = ("MIXPANEL_SERVICE_ACCOUNT_SECRET", "MIXPANEL_API_SECRET", "HITCRAFT_SMTP_PASSWORD",
                    "OPENAI_API_KEY", "HITCRAFT_SECRET_KEY")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@")
_SECRET_PARAM = re.compile(r"(?i)\b((?:token|key|secret|password|passwd|sig|signature|auth)[a-z_]*=)[^&\s]+")


def redact(text: str, secrets: list[str] | None = None) -> str:
    """`text` without the configured secrets, URL credentials or secret-looking query values."""
    values = secrets if secrets is not None else [os.environ.get(v, "") for v in SECRET_VARIABLES]
    for value in sorted((v for v in values if v and len(v) >= 4), key=len, reverse=True):
        text = text.replace(value, "***")
    text = _USERINFO.sub(r"\1***@", text)
    return _SECRET_PARAM.sub(r"\1***", text)


def alert_message(*, job: str, run_id: str, failures: list[tuple[str, str, str]], sender: str, to: str,
                  run_url: str, when: datetime | None = None) -> EmailMessage:
    """`failures`: (step, error class, message) of each failed step."""
    when = when or datetime.now(timezone.utc)
    msg = EmailMessage()
    msg["Subject"] = f"[HitCraft] run failed: {job} ({run_id[:8]})"
    msg["From"] = sender
    msg["To"] = to
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = make_msgid(idstring=f"alert.{run_id}")
    msg["Auto-Submitted"] = "auto-generated"
    lines = [f"The run {run_id} of {job} failed at {when:%Y-%m-%d %H:%M} UTC.", "", f"Open it: {run_url}", ""]
    for step, error_class, message in failures or [("(the run)", "", "no step failed: see the run's log")]:
        lines += [f"Step {step}: {error_class}", f"  {redact(message).strip()[:2000]}", ""]
    lines.append("Sent by the run-failure sensor of the HitCraft Analytics Engine.")
    msg.set_content("\n".join(lines))
    return msg
