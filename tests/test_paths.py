"""Path rules, version tokens and object keys (src/repo/paths.py)."""

from __future__ import annotations

import time
import unicodedata
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from repo.errors import InvalidPathError, RepoError
from repo.paths import (
    DATA_PREFIX,
    MAX_KEY_BYTES,
    MAX_SEGMENT_BYTES,
    TOKEN_LENGTH,
    make_key,
    new_version_token,
    safe_join,
    unique_path,
    validate_path,
)

CROCKFORD_LOWER = set("0123456789abcdefghjkmnpqrstvwxyz")
#: Bytes a key adds around the path: "data/" before it, "~" + token after it.
KEY_OVERHEAD = len(DATA_PREFIX) + 1 + TOKEN_LENGTH


def _path_of_bytes(n: int) -> str:
    """An ASCII path of exactly `n` bytes, split into segments short enough to be valid."""
    segments = []
    while n > 0:
        take = min(n, MAX_SEGMENT_BYTES)
        if n - take == 1:  # don't leave a remainder that only fits the '/' separator
            take -= 1
        segments.append("s" * take)
        n -= take + 1
    return "/".join(segments)


# ------------------------------------------------------------------ accepted


@pytest.mark.parametrize(
    "path",
    [
        "a",
        "reports/daily.csv",
        "a/b/c/d/e.txt",
        ".hidden",
        "..dots",
        "dots..",
        "name with spaces.txt",
        "a~b",
        "x=1/y=2",
        "日本語/ファイル.txt",
        "emoji/🙂.bin",
        "Ünïcödé/naïve",
    ],
)
def test_ordinary_relative_path_is_accepted_unchanged(path: str) -> None:
    assert validate_path(path) == path


def test_nfd_path_is_returned_in_nfc_form() -> None:
    nfd = unicodedata.normalize("NFD", "café/résumé.txt")
    assert nfd != "café/résumé.txt"
    assert validate_path(nfd) == "café/résumé.txt"
    assert unicodedata.is_normalized("NFC", validate_path(nfd))


def test_names_differing_only_by_normalisation_are_the_same_path() -> None:
    composed = "\u00c5ngstr\u00f6m"  # Å, ö precomposed
    decomposed = "A\u030angstro\u0308m"
    assert composed != decomposed
    assert validate_path(composed) == validate_path(decomposed)


# ------------------------------------------------------------------ rejected


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("", "empty"),
        ("/abs/file", "absolute"),
        ("/", "absolute"),
        ("a//b", "empty segment"),
        ("a/", "empty segment"),
        ("a/b/", "empty segment"),
        (".", "'.'"),
        ("./a", "'.'"),
        ("a/./b", "'.'"),
        ("..", "'..'"),
        ("../a", "'..'"),
        ("a/../b", "'..'"),
        ("a/..", "'..'"),
    ],
)
def test_malformed_path_is_rejected(path: str, why: str) -> None:
    with pytest.raises(InvalidPathError, match=why):
        validate_path(path)


def test_path_with_dotdot_segment_is_rejected() -> None:
    with pytest.raises(InvalidPathError):
        validate_path("reports/../../etc/passwd")


@pytest.mark.parametrize(
    "char",
    ["\x00", "\x01", "\t", "\n", "\r", "\x1b", "\x1f", "\x7f", "\x80", "\x85", "\x9f"],
    ids=lambda c: f"U+{ord(c):04X}",
)
def test_path_with_control_character_is_rejected(char: str) -> None:
    with pytest.raises(InvalidPathError, match=f"U\\+{ord(char):04X}"):
        validate_path(f"a/b{char}c.txt")


@pytest.mark.parametrize("char", ["\u2028", "\u2029"], ids=["LS", "PS"])
def test_path_with_unicode_line_separator_is_rejected(char: str) -> None:
    with pytest.raises(InvalidPathError):
        validate_path(f"a{char}b")


def test_path_with_lone_surrogate_is_rejected() -> None:
    with pytest.raises(InvalidPathError):
        validate_path("a/\udc80.txt")


@pytest.mark.parametrize("value", [None, b"a/b", 1, Path("a/b"), ["a"]], ids=repr)
def test_non_string_path_is_rejected(value: object) -> None:
    with pytest.raises(InvalidPathError, match="must be a string"):
        validate_path(value)


def test_invalid_path_error_is_a_repo_error_and_a_value_error() -> None:
    with pytest.raises(RepoError):
        validate_path("")
    with pytest.raises(ValueError, match="path is empty"):
        validate_path("")


def test_segment_of_exactly_the_limit_is_accepted() -> None:
    segment = "s" * MAX_SEGMENT_BYTES
    assert validate_path(f"dir/{segment}") == f"dir/{segment}"


def test_segment_one_byte_over_the_limit_is_rejected() -> None:
    with pytest.raises(InvalidPathError, match=f"longer than {MAX_SEGMENT_BYTES} bytes"):
        validate_path("dir/" + "s" * (MAX_SEGMENT_BYTES + 1))


def test_segment_limit_counts_utf8_bytes_not_characters() -> None:
    # "é" is 2 bytes in UTF-8: 101 characters are 202 bytes.
    with pytest.raises(InvalidPathError, match="longer than"):
        validate_path("é" * 101)
    assert validate_path("é" * 100) == "é" * 100


@pytest.mark.parametrize("key_prefix", ["", "pre/", "team/ünïcode/"])
def test_path_that_makes_a_key_of_exactly_the_limit_is_accepted(key_prefix: str) -> None:
    path = _path_of_bytes(MAX_KEY_BYTES - KEY_OVERHEAD - len(key_prefix.encode()))
    assert validate_path(path, key_prefix=key_prefix) == path
    key = make_key(key_prefix, path, new_version_token())
    assert len(key.encode()) == MAX_KEY_BYTES


@pytest.mark.parametrize("key_prefix", ["", "pre/", "team/ünïcode/"])
def test_path_one_byte_over_the_key_limit_is_rejected(key_prefix: str) -> None:
    path = _path_of_bytes(MAX_KEY_BYTES - KEY_OVERHEAD - len(key_prefix.encode()) + 1)
    with pytest.raises(InvalidPathError, match="too long") as info:
        validate_path(path, key_prefix=key_prefix)
    assert info.value.hint is not None
    assert "1024" in info.value.hint


def test_key_limit_counts_utf8_bytes_of_the_path() -> None:
    # 3-byte characters: the character count is well under 1024 but the byte count is not.
    segment = "日" * (MAX_SEGMENT_BYTES // 3)
    path = "/".join([segment] * 6)
    assert len(path) < MAX_KEY_BYTES < len(path.encode())
    with pytest.raises(InvalidPathError, match="too long"):
        validate_path(path)


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/abs",
        "a//b",
        "a/../b",
        "a\nb",
        "a\u2028b",
        "a\x85b",
        "x" * 5000,
        "d/" + "s" * 300,
        "/".join(["s" * 200] * 6),
    ],
    ids=lambda p: repr(p[:12]),
)
def test_path_error_message_is_one_line(path: str) -> None:
    with pytest.raises(InvalidPathError) as info:
        validate_path(path)
    message = str(info.value)
    assert message
    assert len(message.splitlines()) == 1
    assert len(message) < 300  # a long path is shown shortened
    if info.value.hint is not None:
        assert len(info.value.hint.splitlines()) == 1


# --------------------------------------------------------- property-based


@given(st.text(alphabet=st.characters(exclude_categories=()), max_size=60))
@example("a/./b")
@example("a/../b")
@example("A\u030a")
@example("a\x00b")
@example("\ud800")
@example("a/b/")
def test_valid_paths_are_clean_and_validation_is_idempotent(text: str) -> None:
    try:
        clean = validate_path(text)
    except InvalidPathError:
        return
    segments = clean.split("/")
    assert "" not in segments
    assert "." not in segments
    assert ".." not in segments
    assert not any(unicodedata.category(ch) in ("Cc", "Cs") for ch in clean)
    assert unicodedata.is_normalized("NFC", clean)
    assert clean == unicodedata.normalize("NFC", text)
    assert validate_path(clean) == clean


@given(
    st.lists(
        st.text(
            alphabet=st.characters(
                exclude_categories=("Cc", "Cs"), exclude_characters="/\u2028\u2029"
            ),
            min_size=1,
            max_size=20,
        ).filter(lambda s: unicodedata.normalize("NFC", s) not in (".", "..")),
        min_size=1,
        max_size=6,
    )
)
def test_segments_without_forbidden_parts_form_a_valid_path(segments: list[str]) -> None:
    text = "/".join(segments)
    assert validate_path(text) == unicodedata.normalize("NFC", text)


# ---------------------------------------------------------- version tokens


def test_version_token_is_26_base32_characters() -> None:
    token = new_version_token()
    assert len(token) == TOKEN_LENGTH == 26
    assert set(token) <= CROCKFORD_LOWER


def test_version_tokens_are_unique() -> None:
    tokens = [new_version_token() for _ in range(20_000)]
    assert len(set(tokens)) == len(tokens)
    assert all(len(t) == 26 and set(t) <= CROCKFORD_LOWER for t in tokens)


def test_version_tokens_made_later_sort_later() -> None:
    earlier = [new_version_token() for _ in range(50)]
    time.sleep(0.002)
    later = [new_version_token() for _ in range(50)]
    assert max(earlier) < min(later)


def test_version_token_starts_with_the_current_milliseconds() -> None:
    before = int(time.time() * 1000)
    token = new_version_token()
    after = int(time.time() * 1000)
    value = 0
    for ch in token:
        value = value * 32 + "0123456789abcdefghjkmnpqrstvwxyz".index(ch)
    assert before <= value >> 80 <= after


@pytest.mark.parametrize(
    ("millis", "bits"),
    [(0, 0), (1, 1), (2**48 - 1, 2**80 - 1), (1_790_000_000_000, 0x1F), (2**47, 2**79 + 12345)],
)
def test_version_token_is_the_time_and_random_bits_in_base32_most_significant_first(
    monkeypatch: pytest.MonkeyPatch, millis: int, bits: int
) -> None:
    import random

    from repo import paths

    class Fixed(random.Random):
        def getrandbits(self, k: int) -> int:
            assert k == 80
            return bits

    monkeypatch.setattr(paths, "_token_random", Fixed())
    monkeypatch.setattr(paths.time, "time", lambda: millis / 1000 + 0.0001)
    value, digits = (millis << 80) | bits, []
    for _ in range(TOKEN_LENGTH):
        digits.append("0123456789abcdefghjkmnpqrstvwxyz"[value % 32])
        value //= 32
    assert new_version_token() == "".join(reversed(digits))


# -------------------------------------------------------------------- keys


def test_make_key_puts_path_under_data_with_token_suffix() -> None:
    assert make_key("", "reports/daily.csv", "tok") == "data/reports/daily.csv~tok"
    assert make_key("team/", "a.txt", "tok") == "team/data/a.txt~tok"


def test_keys_of_two_versions_of_one_path_differ() -> None:
    assert make_key("", "p", new_version_token()) != make_key("", "p", new_version_token())


def test_unique_path_is_a_valid_path_and_unique() -> None:
    first, second = unique_path(), unique_path()
    assert first != second
    assert validate_path(first) == first


# --------------------------------------------------------------- safe_join


def test_safe_join_places_key_below_root(tmp_path: Path) -> None:
    joined = safe_join(tmp_path, "data/a/b.txt~tok")
    assert joined == str(tmp_path / "data" / "a" / "b.txt~tok")


@pytest.mark.parametrize(
    "relative",
    ["../outside", "a/../../outside", "/etc/passwd", "", ".", "a/.."],
)
def test_safe_join_refuses_to_escape_or_return_root(tmp_path: Path, relative: str) -> None:
    with pytest.raises(InvalidPathError, match="escapes"):
        safe_join(tmp_path / "root", relative)


def test_safe_join_refuses_sibling_with_root_as_name_prefix(tmp_path: Path) -> None:
    with pytest.raises(InvalidPathError):
        safe_join(tmp_path / "root", "../root2/file")
