"""Talking to the SMTP server with the standard library.

The server is given as a URL with ``--smtp URL`` or ``RMCORE_SMTP_URL``:

- ``smtp://host[:port]``: plain SMTP (port 25);
- ``smtp+starttls://host[:port]``: SMTP upgraded with STARTTLS (port 587);
- ``smtps://host[:port]``: implicit TLS from the first byte (port 465).

``?timeout=SECONDS`` sets the network timeout (default 30). The user name and password
come from ``RMCORE_SMTP_USER`` and ``RMCORE_SMTP_PASSWORD`` only: a URL carrying
credentials is refused (it would end up in shell history and process listings), and a
password is never sent over an unencrypted connection except to this machine.
"""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

from attrs import frozen

from rmcore.delivery import DeliveryError

SCHEMES = {"smtp": ("plain", 25), "smtp+starttls": ("starttls", 587), "smtps": ("tls", 465)}
USER_VARIABLE = "RMCORE_SMTP_USER"
PASSWORD_VARIABLE = "RMCORE_SMTP_PASSWORD"
LOOPBACK = ("localhost", "127.0.0.1", "::1")


@frozen
class SmtpTarget:
    """Where and how to connect."""

    host: str
    port: int
    security: str  # plain, starttls or tls
    timeout: float = 30.0

    def __str__(self) -> str:
        scheme = {v[0]: k for k, v in SCHEMES.items()}[self.security]
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


def parse_url(url: str) -> SmtpTarget:
    """Read an SMTP URL (see the module docstring); refuse credentials and unknown parts."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise DeliveryError(f"SMTP URL {url!r} is not valid: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise DeliveryError(
            f"SMTP URL {url!r} must start with smtp://, smtp+starttls:// or smtps://"
        )
    if parts.username is not None or parts.password is not None:
        raise DeliveryError(
            f"the SMTP URL must not contain a user or password; set {USER_VARIABLE} and "
            f"{PASSWORD_VARIABLE} in the environment instead"
        )
    if not parts.hostname:
        raise DeliveryError(f"SMTP URL {url!r} names no host")
    if parts.path not in ("", "/") or parts.fragment:
        raise DeliveryError(f"SMTP URL {url!r} has a path or fragment; give only host and port")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"timeout"}
    if unknown:
        raise DeliveryError(f"SMTP URL option {', '.join(sorted(unknown))} is not known")
    timeout = 30.0
    if "timeout" in query:
        try:
            timeout = float(query["timeout"][-1])
        except ValueError:
            timeout = 0
        if not 0 < timeout <= 600:
            raise DeliveryError("the SMTP URL timeout must be a number of seconds up to 600")
    security, default_port = SCHEMES[parts.scheme]
    return SmtpTarget(parts.hostname, port or default_port, security, timeout)


def credentials(environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """``(user, password)`` from the environment, or None to send without logging in."""
    environ = os.environ if environ is None else environ
    user = environ.get(USER_VARIABLE, "")
    password = environ.get(PASSWORD_VARIABLE, "")
    if not user and not password:
        return None
    if not user or not password:
        raise DeliveryError(f"set both {USER_VARIABLE} and {PASSWORD_VARIABLE}, or neither")
    return user, password


def check_login(target: SmtpTarget, login: tuple[str, str] | None) -> None:
    """Refuse to send a password unencrypted to anything but this machine."""
    if login and target.security == "plain" and target.host not in LOOPBACK:
        raise DeliveryError(
            f"refusing to send the SMTP password unencrypted to {target}; use "
            "smtp+starttls:// or smtps://"
        )


def check_setup(url: str | None, environ: Mapping[str, str] | None = None) -> None:
    """Check the SMTP URL and the login from the environment without connecting."""
    login = credentials(environ)
    if url:
        check_login(parse_url(url), login)


class Mailer:
    """One open SMTP connection, logged in if credentials are set."""

    def __init__(self, target: SmtpTarget, login: tuple[str, str] | None = None) -> None:
        self.target = target
        self.login = login
        self.client: smtplib.SMTP | None = None

    def open(self) -> Mailer:
        """Connect (TLS as the URL says) and log in; errors are DeliveryErrors naming the server."""
        target = self.target
        check_login(target, self.login)
        local = socket.gethostname() or "localhost"
        try:
            if target.security == "tls":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    target.host,
                    target.port,
                    local_hostname=local,
                    timeout=target.timeout,
                    context=ssl.create_default_context(),
                )
            else:
                client = smtplib.SMTP(
                    target.host, target.port, local_hostname=local, timeout=target.timeout
                )
            self.client = client
            client.ehlo()
            if target.security == "starttls":
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if self.login:
                client.login(*self.login)
        except smtplib.SMTPAuthenticationError as exc:
            self.close()
            raise DeliveryError(
                f"the SMTP server {target} refused the login of {self.login[0]!r}: "
                f"{reply_text(exc)}"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise DeliveryError(
                f"could not reach the SMTP server {target}: {error_text(exc)}"
            ) from None
        return self

    def send(self, sender: str, recipient: str, message: bytes) -> None:
        """Send one message to one recipient; returns only once the server accepted it."""
        assert self.client is not None
        refused = self.client.sendmail(sender, [recipient], message)
        if refused:
            raise smtplib.SMTPRecipientsRefused(refused)

    def close(self) -> None:
        """Say goodbye to the server (quietly, if it is already gone)."""
        client, self.client = self.client, None
        if client is None:
            return
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()

    def __enter__(self) -> Mailer:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def reply_text(exc: smtplib.SMTPResponseException) -> str:
    """``550 no such user`` from a server reply."""
    message = exc.smtp_error
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return f"{exc.smtp_code} {' '.join(str(message).split())}"


def error_text(exc: BaseException) -> str:
    """One line describing what went wrong talking to the server."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = [
            f"{code} {' '.join(msg.decode('utf-8', 'replace').split())}"
            if isinstance(msg, bytes)
            else f"{code} {msg}"
            for code, msg in exc.recipients.values()
        ]
        return "recipient refused: " + "; ".join(replies)
    if isinstance(exc, smtplib.SMTPResponseException):
        return reply_text(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__


CONNECTION_ERRORS = (smtplib.SMTPServerDisconnected, OSError)
MESSAGE_ERRORS = (
    smtplib.SMTPRecipientsRefused,
    smtplib.SMTPSenderRefused,
    smtplib.SMTPDataError,
    smtplib.SMTPNotSupportedError,
    smtplib.SMTPResponseException,
)
