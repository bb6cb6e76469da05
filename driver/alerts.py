"""Alerts to a Telegram-Bot-API-compatible webhook (refresh.md §7.5, §11.1, OP-R10).

Configuration from the environment: TELEGRAM_BOT_TOKEN, TELEGRAM_CHAT_ID, and optionally
BARSMITH_ALERT_URL (base URL, default https://api.telegram.org). Missing configuration or a
failed delivery is reported as "not sent" and never fails the run; the token never appears in
any message.
"""

from __future__ import annotations

import html
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field

SEVERITIES = ("INFO", "WARNING", "ERROR", "CRITICAL")
MARKERS = {"CRITICAL": "\U0001F534", "ERROR": "\U0001F7E0", "WARNING": "\U0001F7E1", "INFO": "\U0001F535"}


def severity_rank(name: str) -> int:
    try:
        return SEVERITIES.index(name.upper())
    except ValueError:
        raise ValueError(f"unknown severity {name!r} (one of {', '.join(SEVERITIES)})") from None


@dataclass
class Alert:
    severity: str
    title: str
    lines: list[str] = field(default_factory=list)

    def text(self) -> str:
        from .db import mask_secrets  # noqa: PLC0415

        body = "\n".join(html.escape(mask_secrets(line)) for line in self.lines[:20])
        title = html.escape(mask_secrets(self.title))
        return f"{MARKERS[self.severity]} <b>{html.escape(self.severity)}: {title}</b>\n{body}".strip()


@dataclass
class Delivery:
    sent: bool
    reason: str


def _mask(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text


def send(alert: Alert, threshold: str = "ERROR", env: dict[str, str] | None = None, timeout: float = 10.0) -> Delivery:
    """Send the alert when its severity is at or above the threshold (CRITICAL always)."""
    env = os.environ if env is None else env
    if alert.severity != "CRITICAL" and severity_rank(alert.severity) < severity_rank(threshold):
        return Delivery(False, f"below threshold {threshold}")
    token = env.get("TELEGRAM_BOT_TOKEN", "")
    chat = env.get("TELEGRAM_CHAT_ID", "")
    if not token or not chat:
        return Delivery(False, "not configured (TELEGRAM_BOT_TOKEN / TELEGRAM_CHAT_ID unset)")
    base = env.get("BARSMITH_ALERT_URL", "https://api.telegram.org").rstrip("/")
    payload = json.dumps({"chat_id": chat, "text": alert.text(), "parse_mode": "HTML"}).encode()
    request = urllib.request.Request(f"{base}/bot{token}/sendMessage", data=payload,
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.status != 200:
                return Delivery(False, f"webhook answered HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        return Delivery(False, f"webhook answered HTTP {exc.code}")
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        return Delivery(False, _mask(f"webhook unreachable: {exc}", token))
    return Delivery(True, "sent")
