"""Every configuration setting, defined once.

`SETTINGS` is the one list of what a configuration may say: each key's JSON type, default,
environment override, one-line description, validation rule and masking. The loader
(`repo.config`), `repo config --show` and the README's configuration table are all driven
by it, so a new setting is added here and as a `Config` attribute, nowhere else (a test
checks the two agree, and another that the README shows this table).

This module sits below everything: it imports only the standard library, `repo.errors` and
the plain facts of `repo.storage_classes` and `repo.retention`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .retention import is_time_zone
from .storage_classes import ARCHIVE_CLASSES, DEFAULT_ARCHIVE_CLASS, EARLY_DELETION_POLICIES

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "BY_KEY",
    "REPLICATE_ON_PUBLISH",
    "S3_SSE_ALGORITHMS",
    "SETTINGS",
    "STORE_NAME_PATTERN",
    "Check",
    "Mask",
    "Setting",
    "check_type",
    "check_value",
    "default_of",
    "default_of_text",
    "markdown_rows",
    "value_from_env",
]


class Mask(enum.Enum):
    """How `repo config --show` displays a value. Masked values never appear in errors."""

    NONE = "shown as is"
    #: An access key id is not secret, but its start is enough to tell which one is in use.
    START = "its first four characters, then ****"
    ALL = "****"
    #: A URL may carry a password, in its user info or its query: `repo.urls.mask_url`.
    PASSWORD = "passwords replaced by ***"  # noqa: S105 - a masking rule, not a password


@dataclass(frozen=True, slots=True)
class Check:
    """A validation rule: a value `ok` refuses is reported as "key 'k' must be <must>"."""

    ok: Callable[[Any], bool]
    must: str
    #: Repeat the refused value (", got 'x'") where seeing it helps spot the typo.
    echo: bool = False


def _http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _printable(value: str) -> bool:
    return bool(value.strip()) and value.isprintable()


#: The server-side encryption `s3_sse` may ask for: SSE-S3 and SSE-KMS.
S3_SSE_ALGORITHMS = ("AES256", "aws:kms")

POSITIVE = Check(lambda n: n > 0, "a positive integer")
ZERO_OR_MORE = Check(lambda n: n >= 0, "zero or more")
AT_LEAST_ONE = Check(lambda n: n >= 1, "at least 1")
PRINTABLE_NAME = Check(_printable, "a non-empty printable name")
BARE_BUCKET = Check(lambda s: bool(s.strip()) and "/" not in s, "a bare bucket name")
HTTP_URL = Check(_http_url, "an http:// or https:// URL")
#: A backup key: long enough to be a key, printable so that it fits a JSON document.
BACKUP_KEY = Check(
    lambda s: len(s) >= 32 and s.isprintable() and not s.isspace(),
    "at least 32 printable characters (e.g. the output of `openssl rand -hex 32`)",
)
#: How an upload is verified where the bucket's ETags are no md5s (`s3_upload_check`).
S3_UPLOAD_CHECKS = ("read-back", "server")
UPLOAD_CHECK = Check(
    lambda s: s in S3_UPLOAD_CHECKS, "'read-back' (safe on every server) or 'server'", echo=True
)
SSE_ALGORITHM = Check(
    lambda s: s in S3_SSE_ALGORITHMS, "'AES256' (SSE-S3) or 'aws:kms' (SSE-KMS)", echo=True
)
KMS_KEY = Check(_printable, "a non-empty key id or ARN")
ARCHIVE_CLASS = Check(
    lambda s: s in ARCHIVE_CLASSES, "'GLACIER_IR', 'GLACIER' or 'DEEP_ARCHIVE'", echo=True
)

TIME_ZONE = Check(is_time_zone, "an IANA time zone such as 'UTC' or 'Europe/Berlin'", echo=True)
#: What may name a store (`store_name`, the keys of `stores`).
STORE_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}")
STORE_NAME = Check(
    lambda s: STORE_NAME_PATTERN.fullmatch(s) is not None,
    "1-32 characters of a-z, 0-9, '_' and '-', starting with a letter",
    echo=True,
)
#: When `publish` makes a version's copies in the other stores (`replicate_on_publish`).
REPLICATE_ON_PUBLISH = ("now", "later")
REPLICATE_WHEN = Check(
    lambda s: s in REPLICATE_ON_PUBLISH, "'now' (before publish returns) or 'later'", echo=True
)
EARLY_DELETION = Check(lambda s: s in EARLY_DELETION_POLICIES, "'warn' or 'refuse'", echo=True)


@dataclass(frozen=True, kw_only=True, slots=True)
class Setting:
    """One key of the configuration document."""

    key: str
    types: tuple[type, ...]
    #: One line of Markdown: the README's "meaning" column.
    description: str
    #: The `Config` attribute it sets (and its name in `repo config --show`); "" = `key`.
    into: str = ""
    #: The value used when the key is absent, when that value is fixed.
    default: int | str | None = None
    #: What happens when the key is absent, when it is not a fixed value (Markdown).
    default_text: str = ""
    #: An environment variable that, when set and not empty, wins over the document.
    env: str | None = None
    check: Check | None = None
    mask: Mask = Mask.NONE

    @property
    def attribute(self) -> str:
        return self.into or self.key

    @property
    def secret(self) -> bool:
        return self.mask is not Mask.NONE


_STR, _INT = (str,), (int,)
_AWS_CHAIN = "the AWS credential chain"

#: In the order `repo config --show` and the README list them.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        key="store",
        types=_STR,
        into="store_url",
        default_text="required, unless `default_s3_bucket` is set",
        description="where the files are: `s3://bucket/optional/prefix`, `file:///abs/path` "
        "or `sftp://user@host[:port]/abs/path`",
    ),
    Setting(
        key="default_s3_bucket",
        types=_STR,
        into="store_url",
        check=BARE_BUCKET,
        description="instead of `store`: the bucket holding the files (the seed's key)",
    ),
    Setting(
        key="database",
        types=(str, dict),
        into="database_url",
        mask=Mask.PASSWORD,
        default_text="required",
        description="the catalog: a URL (`postgresql://user:pw@host:port/db`, "
        "`sqlite:///path/catalog.db`) or an object (`host`, `port`, `user`, `password`, "
        "`database`)",
    ),
    Setting(
        key="local_root",
        types=_STR,
        env="REPO_LOCAL_ROOT",
        default_text="`local/<store>` under `$REPO_HOME` or the user data directory: "
        "one per repository",
        description="this host's staging files and verified cache (relative to the file's folder)",
    ),
    Setting(
        key="host_name",
        types=_STR,
        env="REPO_HOST_NAME",
        check=PRINTABLE_NAME,
        default_text="this machine's host name",
        description="this host's identity, recorded as files' origin and cache holder",
    ),
    Setting(
        key="backup_s3_bucket",
        types=_STR,
        into="backup_store_url",
        default_text="the store's bucket, under the store's prefix",
        description="where catalog backups and the change journal go",
    ),
    Setting(
        key="s3_endpoint_url",
        types=_STR,
        check=HTTP_URL,
        mask=Mask.PASSWORD,
        default_text="AWS S3",
        description="an S3-compatible endpoint, e.g. `http://127.0.0.1:9000`",
    ),
    Setting(
        key="s3_region",
        types=_STR,
        default_text="`$AWS_REGION`, else `us-east-1`",
        description="the bucket's region",
    ),
    Setting(
        key="s3_access_key",
        types=_STR,
        mask=Mask.START,
        default_text=_AWS_CHAIN,
        description="the S3 access key id (`config --show` prints only its first four characters)",
    ),
    Setting(
        key="s3_secret_key",
        types=_STR,
        mask=Mask.ALL,
        default_text=_AWS_CHAIN,
        description="the S3 secret key (never printed)",
    ),
    Setting(
        key="cache_max_bytes",
        types=_INT,
        env="REPO_CACHE_MAX_BYTES",
        check=POSITIVE,
        default_text="no limit",
        description="size limit of this host's cache (least recently used copies are evicted)",
    ),
    Setting(
        key="unpublished_ttl_seconds",
        types=_INT,
        check=ZERO_OR_MORE,
        default=86_400,
        description="GC purges unpublished versions older than this",
    ),
    Setting(
        key="expired_ttl_seconds",
        types=_INT,
        check=ZERO_OR_MORE,
        default=604_800,
        description="GC purges expired versions older than this, once "
        "`backups_before_purge` backups were taken since they expired",
    ),
    Setting(
        key="orphan_grace_seconds",
        types=_INT,
        check=ZERO_OR_MORE,
        default=86_400,
        description="`gc --orphans` deletes unreferenced objects older than this",
    ),
    Setting(
        key="backups_before_purge",
        types=_INT,
        check=ZERO_OR_MORE,
        default=2,
        description="completed catalog backups GC waits for after a version expires",
    ),
    Setting(
        key="backup_keep",
        types=_INT,
        check=AT_LEAST_ONE,
        default=7,
        description="backups retention keeps (never fewer than `backups_before_purge`)",
    ),
    Setting(
        key="s3_timeout_seconds",
        types=_INT,
        check=AT_LEAST_ONE,
        default=60,
        description="how long an S3 request may wait for the server's next bytes before it "
        "is abandoned and retried; retries stop 3 times this after the first attempt",
    ),
    Setting(
        key="s3_sse",
        types=_STR,
        check=SSE_ALGORITHM,
        default_text="none asked for",
        description="server-side encryption asked for on every write: `AES256` (SSE-S3) "
        "or `aws:kms` (SSE-KMS)",
    ),
    Setting(
        key="s3_sse_kms_key_id",
        types=_STR,
        check=KMS_KEY,
        default_text="the bucket's default key",
        description="the KMS key (id, ARN or alias) for `s3_sse` `aws:kms`",
    ),
    Setting(
        key="backup_key",
        types=_STR,
        check=BACKUP_KEY,
        mask=Mask.ALL,
        default_text="none: backups and journal entries are not authenticated",
        description="a secret (32+ characters, e.g. `openssl rand -hex 32`) that signs "
        "backup manifests and journal entries; restore and retention then trust only what "
        "it signed. Keep it with the configuration, never in the bucket",
    ),
    Setting(
        key="s3_upload_check",
        types=_STR,
        check=UPLOAD_CHECK,
        default="read-back",
        description="where the bucket's ETags are no md5s (SSE-KMS, SSE-C, S3 Express): "
        "`read-back` reads every upload back and hashes it; `server` trusts the server's "
        "own check of the Content-MD5 and CRC32 sent (AWS checks them; some servers do not)",
    ),
    Setting(
        key="archive_class",
        types=_STR,
        check=ARCHIVE_CLASS,
        default=DEFAULT_ARCHIVE_CLASS,
        description="the class `repo archive` moves versions to without `--class`: "
        "`GLACIER_IR` (read without a restore), `GLACIER` or `DEEP_ARCHIVE` "
        "(docs/archiving.md)",
    ),
    Setting(
        key="archive_early_deletion",
        types=_STR,
        check=EARLY_DELETION,
        default="warn",
        description="when `repo archive` or `repo gc` would delete or move an archived object "
        "before its class's minimum storage duration (90 or 180 days, billed anyway): "
        "`warn` and go on, or `refuse`",
    ),
    Setting(
        key="ssh_key_file",
        types=_STR,
        env="REPO_SSH_KEY_FILE",
        default_text="the SSH agent, then `~/.ssh/id_*`",
        description="for an `sftp://` store: the private key to log in with (no passphrase; "
        "relative to the file's folder)",
    ),
    Setting(
        key="ssh_known_hosts",
        types=_STR,
        env="REPO_SSH_KNOWN_HOSTS",
        default_text="`~/.ssh/known_hosts`",
        description="for an `sftp://` store: the known_hosts file the server's host key must "
        "be in (an unknown host is refused, never added)",
    ),
    Setting(
        key="retention_timezone",
        types=_STR,
        check=TIME_ZONE,
        default="UTC",
        description="the time zone (an IANA name, e.g. `Europe/Berlin`) whose hours, days, ISO "
        "weeks and months `repo expire --keep-daily` and the like count in",
    ),
    Setting(
        key="store_name",
        types=_STR,
        check=STORE_NAME,
        default="main",
        description="the name of the default store (`store`) in the catalog and in `stores`, "
        "`placement` and commands (docs/replicas.md)",
    ),
    Setting(
        key="stores",
        types=(dict,),
        default_text="none: the one `store`",
        description="more stores, by name: a URL, or an object with its `url` and its own "
        "`s3_endpoint_url`, `s3_region`, `s3_access_key`, `s3_secret_key`; each in a "
        "bucket of its own",
    ),
    Setting(
        key="numcopies",
        types=_INT,
        check=AT_LEAST_ONE,
        default=1,
        description="copies in distinct stores that `repo replicate` brings every published "
        "version to",
    ),
    Setting(
        key="mincopies",
        types=_INT,
        check=AT_LEAST_ONE,
        default=1,
        description="the floor no operation may take a version's verified copies below "
        "(at most `numcopies`)",
    ),
    Setting(
        key="replicate_on_publish",
        types=_STR,
        check=REPLICATE_WHEN,
        default="later",
        description="`now`: a commit that publishes (`publish`, `add --publish`, a tree) "
        "makes the other copies before it returns; `later`: the version is "
        "under-replicated until `repo replicate`",
    ),
    Setting(
        key="placement",
        types=(dict,),
        default_text="none: every new version goes to the default store",
        description="path prefix -> store name: where new versions under the prefix go "
        "(the longest prefix wins)",
    ),
)

BY_KEY: Mapping[str, Setting] = {s.key: s for s in SETTINGS}


def default_of_text(key: str) -> str:
    """The fixed default of a string setting."""
    default = BY_KEY[key].default
    if not isinstance(default, str):
        raise KeyError(f"setting {key!r} has no fixed string default")
    return default


def default_of(key: str) -> int:
    """The fixed default of an integer setting."""
    default = BY_KEY[key].default
    if not isinstance(default, int):
        raise KeyError(f"setting {key!r} has no fixed integer default")
    return default


#: How errors name a JSON type, and how the README does.
_TYPE_PHRASES = {str: "a string", int: "an integer", dict: "an object"}
_TYPE_WORDS = {str: "string", int: "integer", dict: "object"}


def check_type(
    where: str, value: Any, types: tuple[type, ...], *, secret: bool, hint: str | None = None
) -> None:
    """Raise `ConfigError` unless `value` is one of `types` (a bool is not an integer)."""
    if isinstance(value, types) and not (isinstance(value, bool) and bool not in types):
        return
    names = " or ".join(_TYPE_PHRASES[t] for t in types)
    # A secret's value is never repeated, but its JSON type says what went wrong.
    shown = _json_kind(value) if secret else repr(value)
    raise ConfigError(f"{where} must be {names}, got {shown}", hint=hint)


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    return "a value of another kind"


def check_value(setting: Setting, value: Any, where: str, *, hint: str | None = None) -> None:
    """Raise `ConfigError` unless `value` has the setting's type and passes its rule.

    `where` starts the message ("cfg.json: key 'backup_keep'")."""
    check_type(where, value, setting.types, secret=setting.secret, hint=hint)
    rule = setting.check
    if rule is not None and not rule.ok(value):
        got = f", got {value!r}" if rule.echo and not setting.secret else ""
        raise ConfigError(f"{where} must be {rule.must}{got}", hint=hint)


def value_from_env(setting: Setting, text: str) -> str | int:
    """The value of the setting's environment variable, typed and checked."""
    where = f"${setting.env}"
    hint = f"fix or unset {where}"
    value: str | int = text
    if int in setting.types:
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"{where} must be an integer, got {text!r}", hint=hint) from None
    check_value(setting, value, where, hint=hint)
    return value


def markdown_rows() -> list[tuple[str, str, str, str, str]]:
    """The README's configuration table: key, type, default, environment, meaning."""
    rows = []
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default is not None else s.default_text or "-"
        env = f"`${s.env}`" if s.env else "-"
        kind = " or ".join(_TYPE_WORDS[t] for t in s.types)
        rows.append((f"`{s.key}`", kind, default, env, s.description))
    return rows
