"""Keep Neo4j credentials out of messages and logs.

:func:`redact` replaces the password of any ``scheme://user:password@host`` in a text with
``***`` and every known secret (``NEO4J_PASSWORD``, the passwords registered with
:func:`register_secret`) with ``***``. :func:`split_uri_credentials` takes the user and
password out of a ``NEO4J_URI`` so that the driver, its logs and linker's messages only ever
see the URI without them. :class:`RedactingFilter` applies :func:`redact` to every record of a
logger; :func:`secret_safe_logger` returns a module logger with that filter, and every module
of :mod:`linker.neo4j` logs through one.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from urllib.parse import unquote

__all__ = [
    "MASK",
    "RedactingFilter",
    "redact",
    "redact_uri",
    "register_secret",
    "secret_safe_logger",
    "split_uri_credentials",
]

MASK = "***"
"""What a secret is replaced with."""

# scheme://userinfo@ : the userinfo is everything up to the last '@' before the host part.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#@\s]*)@")
_MIN_SECRET_LENGTH = 3
_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(secret: str | None) -> None:
    """Remember ``secret`` (a password) so that :func:`redact` masks it from now on.

    Very short strings (under 3 characters) are not registered: masking every ``a`` of a
    message would make it unreadable, and such a password is no secret anyway.
    """
    if secret and len(secret) >= _MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(secret)


def _known_secrets() -> list[str]:
    with _lock:
        known = set(_secrets)
    env = os.environ.get("NEO4J_PASSWORD")
    if env and len(env) >= _MIN_SECRET_LENGTH:
        known.add(env)
    # Longest first, so that a secret containing another is masked whole.
    return sorted(known, key=len, reverse=True)


def _mask_userinfo(match: re.Match[str]) -> str:
    user, sep, _password = match.group("userinfo").partition(":")
    return f"{match.group('scheme')}{user}{':' + MASK if sep else ''}@"


def redact_uri(uri: str) -> str:
    """``uri`` with the password of its user information masked.

    Examples
    --------
    >>> redact_uri("neo4j://alice:s3cret@db.example:7687")
    'neo4j://alice:***@db.example:7687'
    >>> redact_uri("bolt://127.0.0.1:7687")
    'bolt://127.0.0.1:7687'
    """
    return _USERINFO.sub(_mask_userinfo, uri)


def redact(text: str) -> str:
    """``text`` with URI passwords and every known secret replaced by ``***``.

    Examples
    --------
    >>> redact("cannot reach neo4j://bob:pw123@host:7687")
    'cannot reach neo4j://bob:***@host:7687'
    """
    text = redact_uri(text)
    for secret in _known_secrets():
        text = text.replace(secret, MASK)
    return text


def split_uri_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """Split ``scheme://user:password@host:port`` into the URI without them, user, password.

    The user and password are percent-decoded; either is None when the URI has none. The
    password, when there is one, is registered with :func:`register_secret`.

    Examples
    --------
    >>> split_uri_credentials("neo4j+s://alice:p%40ss@db.example")
    ('neo4j+s://db.example', 'alice', 'p@ss')
    >>> split_uri_credentials("bolt://127.0.0.1:7687")
    ('bolt://127.0.0.1:7687', None, None)
    """
    match = _USERINFO.match(uri.strip())
    if match is None:
        return uri, None, None
    user, sep, password = match.group("userinfo").partition(":")
    bare = match.group("scheme") + uri.strip()[match.end() :]
    secret = unquote(password) if sep else None
    register_secret(secret)
    return bare, unquote(user) or None, secret


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message of every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: let the handler report it
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def secret_safe_logger(name: str) -> logging.Logger:
    """The logger ``name`` with a :class:`RedactingFilter` (added once)."""
    log = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in log.filters):
        log.addFilter(RedactingFilter())
    return log
