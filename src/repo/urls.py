"""URLs of the configuration shown safely: their passwords and secret query parameters
masked, whatever they hold (`mask_url`, the one way a configured URL is shown); and the
parts of an ``sftp://`` store URL (`parse_sftp_url`)."""

from __future__ import annotations

import posixpath
from urllib.parse import unquote, unquote_plus, urlsplit

from .errors import ConfigError

__all__ = [
    "SSH_PORT",
    "mask_url",
    "parse_sftp_url",
    "split_url_credentials",
    "url_has_secret",
    "url_is_ambiguous",
]

SSH_PORT = 22

#: Query parameters whose value is a secret: a name holding one of these words
#: (``password``, ``sslpassword``, ``X-Amz-Signature``...). ``passfile`` names a file.
_SECRET_PARAM_WORDS = ("password", "passwd", "pwd", "secret", "token", "signature", "credential")
_HIDDEN = "***"


def split_url_credentials(url: str) -> tuple[str, str | None, str | None, str]:
    """``(scheme://, user, password, rest)``; user and password as written, None if absent.

    The user info ends at the last '@' before the query, and the query starts at the first
    '?' after the first '@': a password may hold '@', '/', ':' and '?' unencoded, and a
    query value may hold '@'. A "user" holding '/' is a path (``sqlite:////a@b/c.db``).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "", None, None, url
    head = scheme + sep
    first = rest.find("@")
    if first < 0:
        return head, None, None, rest
    query = rest.find("?", first)
    end = rest.rfind("@", 0, query if query >= 0 else len(rest))
    user, colon, password = rest[:end].partition(":")
    if "/" in user:
        return head, None, None, rest
    return head, user, password if colon else None, rest[end + 1 :]


def url_is_ambiguous(url: str) -> bool:
    """Does an '@' follow the user info where no value can hold it (a query's name)?

    Then a password holding '@' and '?' cannot be told from the host and the query
    (``u:a@b?c@host``), and no part of the URL can be shown safely.
    """
    head, user, _, rest = split_url_credentials(url)
    if not head:
        return "@" in url
    query = rest.partition("?")[2]
    return user is not None and any("@" in item.partition("=")[0] for item in query.split("&"))


def _secret_param(item: str) -> bool:
    name, eq, value = item.partition("=")
    words = unquote_plus(name).lower()
    return bool(eq and value) and any(word in words for word in _SECRET_PARAM_WORDS)


def mask_url(url: str) -> str:
    """`url` with its password and the values of secret query parameters replaced by ***.

    The one way a URL of the configuration is shown (`repo config --show`, `repo status`,
    errors, reprs). The user name and the rest stay as written.
    """
    head, user, password, rest = split_url_credentials(url)
    if url_is_ambiguous(url):
        return head + _HIDDEN
    userinfo = "" if user is None else f"{user}:{_HIDDEN}@" if password is not None else f"{user}@"
    base, q, query = rest.partition("?")
    if q:
        query = "&".join(
            f"{item.partition('=')[0]}={_HIDDEN}" if _secret_param(item) else item
            for item in query.split("&")
        )
    return head + userinfo + base + q + query


def url_has_secret(url: str) -> bool:
    """Does `url` carry a password (not empty) in its user info or a secret query parameter?"""
    _, _, password, rest = split_url_credentials(url)
    query = rest.partition("?")[2]
    return bool(password) or any(_secret_param(item) for item in query.split("&"))


def parse_sftp_url(url: str) -> tuple[str | None, str, int, str]:
    """``sftp://user@host:port/abs/path`` as (user, host, port, root directory)."""
    parts = urlsplit(url)
    try:
        port = parts.port or SSH_PORT
    except ValueError:
        port = -1
    host = parts.hostname
    root = posixpath.normpath(unquote(parts.path)) if parts.path else ""
    if parts.scheme != "sftp" or not host or port <= 0 or parts.password is not None:
        raise ConfigError(
            f"invalid sftp store URL {url!r}",
            hint="use sftp://user@host[:port]/absolute/path (passwords are not accepted: "
            "use a key)",
        )
    if not root.startswith("/") or root == "/" or "\0" in root or parts.query:
        raise ConfigError(
            f"sftp store URL {url!r} needs an absolute directory below /",
            hint="e.g. sftp://user@host/srv/repo",
        )
    return (unquote(parts.username) if parts.username else None), host, port, root
