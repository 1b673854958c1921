"""The email channel: one message per notification over SMTP (aiosmtplib), with the
severity and rule in the subject, a plain and an HTML body, optional STARTTLS (or
implicit TLS) and login. SMTP 5xx replies are permanent failures, everything else retried."""

from __future__ import annotations

import html
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from chatwatch.alerts.channels.base import Channel, DeliveryError
from chatwatch.alerts.channels.render import alert_line, colour_of, link_of, listed
from chatwatch.alerts.notification import Notification

__all__ = ["EmailChannel", "build_message"]


def _plain(n: Notification) -> str:
    shown, more = listed(n)
    lines = [n.title, ""]
    summary = n.common("annotations").get("summary")
    if summary:
        lines += [summary, ""]
    for a in shown:
        lines.append(f"- {alert_line(a)}")
        lines.append(f"  {a.url}")
        if a.annotations.get("logs_url"):
            lines.append(f"  logs: {a.annotations['logs_url']}")
    if more:
        lines.append(f"… and {more} more")
    lines += ["", f"Open: {link_of(n)}"]
    return "\n".join(lines) + "\n"


def _html(n: Notification) -> str:
    esc = html.escape
    shown, more = listed(n)
    rows = "".join(
        f'<li><a href="{esc(a.url, quote=True)}">{esc(alert_line(a))}</a></li>' for a in shown
    )
    if more:
        rows += f"<li>… and {more} more</li>"
    summary = n.common("annotations").get("summary", "")
    return (
        "<!doctype html><html><body>"
        f'<h2 style="color:{colour_of(n)}">{esc(n.title)}</h2>'
        f"<p>{esc(summary)}</p><ul>{rows}</ul>"
        f'<p><a href="{esc(link_of(n), quote=True)}">Open in chatwatch</a></p>'
        "</body></html>"
    )


def build_message(n: Notification, sender: str, recipients: list[str]) -> EmailMessage:
    """The email for ``n``: plain text with an HTML alternative."""
    msg = EmailMessage()
    msg["Subject"] = n.title
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(n.created_at, usegmt=True)
    msg["Message-ID"] = f"<{n.id}@chatwatch>"
    msg["Idempotency-Key"] = n.id
    msg.set_content(_plain(n))
    msg.add_alternative(_html(n), subtype="html")
    return msg


class EmailChannel(Channel):
    """Sends through the configured SMTP server."""

    async def send(self, notification: Notification) -> None:
        """Send one email, or raise DeliveryError."""
        s = self.settings
        assert s.smtp_host is not None and s.from_addr is not None  # checked by the settings
        message = build_message(notification, s.from_addr, s.to)
        try:
            await aiosmtplib.send(
                message,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.username,
                password=s.password,
                start_tls=s.starttls,
                use_tls=s.use_tls,
                validate_certs=s.tls_verify,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as err:
            codes = [r.code for r in err.recipients]
            retryable = any(code < 500 for code in codes)
            raise DeliveryError(f"recipients refused: {codes}", retryable=retryable) from err
        except aiosmtplib.SMTPResponseException as err:
            retryable = err.code < 500
            raise DeliveryError(
                f"SMTP {err.code}: {err.message[:200]}", retryable=retryable
            ) from err
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as err:
            raise DeliveryError(f"{type(err).__name__}: {err}"[:300], retryable=True) from err
