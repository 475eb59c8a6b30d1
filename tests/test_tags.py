"""Tag rules and date tags (src/repo/tags.py)."""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import repo
from repo.errors import InvalidTagError, RepoError
from repo.tags import DATE_TAG_TYPES, date_tags, tags_with_dates, validate_tag, validate_tags

if TYPE_CHECKING:
    from pathlib import Path

PLUS_5 = timezone(timedelta(hours=5))
MINUS_5 = timezone(timedelta(hours=-5))

# ---------------------------------------------------------------- validate_tag


@pytest.mark.parametrize(
    "tag",
    ["abc", "team=ops", "a=b=c", "=", "x", "with inner space", "日本語", "🙂", "x" * 255],
    ids=lambda t: repr(t[:12]),
)
def test_valid_tag_is_returned_unchanged(tag: str) -> None:
    assert validate_tag(tag) == tag


def test_key_value_tag_is_an_ordinary_tag() -> None:
    assert validate_tags(["team=ops", "team"]) == ["team=ops", "team"]


def test_empty_tag_is_rejected() -> None:
    with pytest.raises(InvalidTagError, match="empty"):
        validate_tag("")


def test_tag_of_256_characters_is_rejected() -> None:
    with pytest.raises(InvalidTagError, match="longer than 255"):
        validate_tag("x" * 256)


def test_tag_length_counts_characters_not_bytes() -> None:
    assert validate_tag("日" * 255) == "日" * 255


def test_tag_length_is_measured_after_nfc() -> None:
    # 255 "é" in NFD are 510 code points, but the tag is 255 characters.
    nfd = unicodedata.normalize("NFD", "é" * 255)
    assert len(nfd) == 510
    assert validate_tag(nfd) == "é" * 255


def test_nfd_tag_becomes_its_nfc_form() -> None:
    nfd = unicodedata.normalize("NFD", "café=crème")
    assert nfd != "café=crème"
    assert validate_tag(nfd) == "café=crème"


@pytest.mark.parametrize(
    "char",
    ["\x00", "\x01", "\t", "\n", "\r", "\x1b", "\x7f", "\x80", "\x85", "\x9f", "\u2028", "\u2029"],
    ids=lambda c: f"U+{ord(c):04X}",
)
def test_tag_with_control_character_inside_is_rejected(char: str) -> None:
    with pytest.raises(InvalidTagError):
        validate_tag(f"a{char}b")


def test_tag_with_lone_surrogate_is_rejected() -> None:
    with pytest.raises(InvalidTagError, match="control"):
        validate_tag("a\udc80b")


@pytest.mark.parametrize(
    "tag", [" abc", "abc ", " abc ", "\u00a0abc", "abc\u3000", " ", "\u2003"], ids=repr
)
def test_tag_with_surrounding_whitespace_is_rejected(tag: str) -> None:
    with pytest.raises(InvalidTagError, match="whitespace"):
        validate_tag(tag)


@pytest.mark.parametrize("value", [None, 1, b"abc", ["abc"]], ids=repr)
def test_non_string_tag_is_rejected(value: object) -> None:
    with pytest.raises(InvalidTagError, match="must be a string"):
        validate_tag(value)


def test_invalid_tag_error_is_a_repo_error_and_a_value_error() -> None:
    with pytest.raises(RepoError):
        validate_tag("")
    with pytest.raises(ValueError, match="tag is empty"):
        validate_tag("")


@pytest.mark.parametrize("tag", ["", "x" * 5000, "a\nb", "a\u2028b", " a", "a\x85b"], ids=repr)
def test_tag_error_message_is_one_short_line(tag: str) -> None:
    with pytest.raises(InvalidTagError) as info:
        validate_tag(tag)
    assert len(str(info.value).splitlines()) == 1
    assert len(str(info.value)) < 200


#: Format characters (category Cf): bidi embeddings, overrides and isolates, zero-width
#: space, non-joiner and joiner, marks, word joiner, byte-order mark, soft hyphen, a
#: language tag beyond the BMP.
FORMAT_CHARACTERS = [
    "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068",
    "\u2069", "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u2060", "\ufeff",
    "\u00ad", "\U000e0001",
]  # fmt: skip


@pytest.mark.parametrize("char", FORMAT_CHARACTERS, ids=lambda c: f"U+{ord(c):04X}")
def test_new_tag_with_a_format_character_is_rejected_with_a_hint(char: str) -> None:
    with pytest.raises(InvalidTagError) as info:
        validate_tag(f"team{char}ops", new=True)
    name = unicodedata.name(char)
    assert str(info.value) == (
        f"tag {f'team{char}ops'!r} contains format character U+{ord(char):04X} ({name})"
    )
    assert info.value.hint == (
        "leave it out: bidi controls and zero-width characters make a name look like another"
    )


def test_format_character_error_shows_the_character_escaped() -> None:
    with pytest.raises(InvalidTagError) as info:
        validate_tag("invoice\u202etxt.exe", new=True)
    assert str(info.value) == (
        "tag 'invoice\\u202etxt.exe' contains format character U+202E (RIGHT-TO-LEFT OVERRIDE)"
    )


def test_tags_to_record_are_new_tags() -> None:
    with pytest.raises(InvalidTagError, match="format character U\\+200B"):
        tags_with_dates(["ok", "zero\u200bwidth"])
    with pytest.raises(InvalidTagError, match="format character U\\+2066"):
        validate_tags(["ok", "\u2066isolated"], new=True)


def test_a_tag_to_look_up_or_remove_may_hold_a_format_character() -> None:
    """Recorded before the rule: still found and removed by its name."""
    assert validate_tag("old\u202etag") == "old\u202etag"
    assert validate_tags(["old\u202etag"]) == ["old\u202etag"]
    assert tags_with_dates(["old\u202etag"], new=False) == ["old\u202etag"]


@given(st.text(alphabet=st.characters(exclude_categories=()), max_size=50))
@example("a\u202eb")
@example("\U000e0001x")
def test_a_new_tag_is_an_old_tag_without_format_characters(text: str) -> None:
    try:
        old = validate_tag(text)
    except InvalidTagError:
        return
    has_format = any(unicodedata.category(ch) == "Cf" for ch in old)
    try:
        new = validate_tag(text, new=True)
    except InvalidTagError:
        assert has_format
    else:
        assert not has_format
        assert new == old


# --------------------------------------------------------------- validate_tags


def test_validate_tags_drops_repeats_keeping_first_order() -> None:
    assert validate_tags(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]


def test_validate_tags_treats_nfd_and_nfc_as_one_tag() -> None:
    nfd = unicodedata.normalize("NFD", "café")
    assert validate_tags(["café", nfd]) == ["café"]


def test_validate_tags_accepts_any_iterable() -> None:
    assert validate_tags(t for t in ("x", "y")) == ["x", "y"]
    assert validate_tags(("x",)) == ["x"]
    assert validate_tags([]) == []


def test_validate_tags_rejects_a_bare_string() -> None:
    with pytest.raises(InvalidTagError, match="single string"):
        validate_tags("abc")


def test_bad_tag_among_good_ones_raises() -> None:
    with pytest.raises(InvalidTagError):
        validate_tags(["good", "also-good", " bad", "never-reached"])


def test_bad_tag_among_good_ones_adds_no_tag_to_the_file(tmp_path: Path) -> None:
    store = tmp_path / "store"
    config = {
        "local_root": str(tmp_path / "local"),
        "store": store.as_uri(),
        "database": f"sqlite:///{tmp_path}/catalog.db",
    }
    with repo.Repo(config=config) as r:
        rf = r.add_file("t.txt")
        with pytest.raises(InvalidTagError):
            rf.tag("good", "bad\x00tag")
        with pytest.raises(InvalidTagError):
            rf.tag_path("good-path", "")
        assert rf.tags == []
        rf.tag("good")
        assert rf.tags == ["good"]


# ------------------------------------------------------------------ date_tags

WHEN = datetime(2026, 11, 25, 18, 42, 7)
ALL_FOUR = ["hour=2026-11-25T18", "day=2026-11-25", "week=2026-W48", "month=2026-11"]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("hour", ALL_FOUR),
        ("day", ALL_FOUR[1:]),
        ("week", ["week=2026-W48"]),
        ("month", ["month=2026-11"]),
    ],
)
def test_date_tag_type_gives_exactly_the_spec_tags(kind: str, expected: list[str]) -> None:
    assert date_tags(WHEN, kind) == expected


def test_date_tag_types_are_exactly_hour_day_week_month() -> None:
    assert set(DATE_TAG_TYPES) == {"hour", "day", "week", "month"}


def test_naive_datetime_is_taken_as_utc() -> None:
    assert date_tags(WHEN, "hour") == date_tags(WHEN.replace(tzinfo=UTC), "hour")


def test_aware_datetime_is_converted_to_utc() -> None:
    # 18:42 at -05:00 is 23:42 UTC on the same day.
    assert date_tags(WHEN.replace(tzinfo=MINUS_5), "hour")[0] == "hour=2026-11-25T23"
    # 18:42 at +05:00 is 13:42 UTC.
    assert date_tags(WHEN.replace(tzinfo=PLUS_5), "hour")[0] == "hour=2026-11-25T13"


def test_date_object_is_midnight_utc() -> None:
    assert date_tags(date(2024, 12, 30), "hour") == [
        "hour=2024-12-30T00",
        "day=2024-12-30",
        "week=2025-W01",
        "month=2024-12",
    ]
    assert date_tags(date(2024, 12, 30), "day") == date_tags(datetime(2024, 12, 30), "day")


@pytest.mark.parametrize(
    ("day", "week"),
    [
        (date(2026, 12, 31), "week=2026-W53"),
        (date(2027, 1, 1), "week=2026-W53"),
        (date(2027, 1, 3), "week=2026-W53"),
        (date(2027, 1, 4), "week=2027-W01"),
        (date(2024, 12, 29), "week=2024-W52"),
        (date(2024, 12, 30), "week=2025-W01"),
        (date(2021, 1, 3), "week=2020-W53"),
        (date(2021, 1, 4), "week=2021-W01"),
        (date(2026, 1, 1), "week=2026-W01"),
    ],
    ids=str,
)
def test_week_tag_uses_the_iso_week_year(day: date, week: str) -> None:
    assert date_tags(day, "week") == [week]


def test_week_year_and_month_year_may_differ_at_new_year() -> None:
    assert date_tags(date(2027, 1, 1), "day") == [
        "day=2027-01-01",
        "week=2026-W53",
        "month=2027-01",
    ]
    assert date_tags(date(2024, 12, 30), "day") == [
        "day=2024-12-30",
        "week=2025-W01",
        "month=2024-12",
    ]


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        # 04:59 on New Year's Day at +05:00 is still the old year in UTC.
        (
            datetime(2027, 1, 1, 4, 59, tzinfo=PLUS_5),
            ["hour=2026-12-31T23", "day=2026-12-31", "week=2026-W53", "month=2026-12"],
        ),
        (
            datetime(2027, 1, 1, 5, 0, tzinfo=PLUS_5),
            ["hour=2027-01-01T00", "day=2027-01-01", "week=2026-W53", "month=2027-01"],
        ),
        (
            datetime(2027, 1, 1, 0, 0, tzinfo=PLUS_5),
            ["hour=2026-12-31T19", "day=2026-12-31", "week=2026-W53", "month=2026-12"],
        ),
        # and 20:00 on New Year's Eve at -05:00 is already the new year.
        (
            datetime(2024, 12, 31, 20, 0, tzinfo=MINUS_5),
            ["hour=2025-01-01T01", "day=2025-01-01", "week=2025-W01", "month=2025-01"],
        ),
    ],
    ids=str,
)
def test_hour_tags_around_new_year_midnight_follow_utc(
    local: datetime, expected: list[str]
) -> None:
    assert date_tags(local, "hour") == expected


def test_year_before_1000_is_zero_padded() -> None:
    assert date_tags(datetime(999, 6, 1, 3), "hour") == [
        "hour=0999-06-01T03",
        "day=0999-06-01",
        "week=0999-W22",
        "month=0999-06",
    ]


@pytest.mark.parametrize(
    "when",
    [datetime(1, 1, 1, tzinfo=PLUS_5), datetime(9999, 12, 31, 23, tzinfo=MINUS_5)],
    ids=str,
)
def test_datetime_outside_the_utc_range_is_an_invalid_tag_error(when: datetime) -> None:
    with pytest.raises(InvalidTagError):
        date_tags(when, "day")


def test_unknown_date_tag_type_raises_with_hint() -> None:
    with pytest.raises(InvalidTagError, match="'year'") as info:
        date_tags(WHEN, "year")
    assert info.value.hint is not None
    for kind in ("hour", "day", "week", "month"):
        assert kind in info.value.hint


@pytest.mark.parametrize("value", ["2026-11-25", 1764093727, None], ids=repr)
def test_date_tags_of_a_non_date_is_rejected(value: object) -> None:
    with pytest.raises(InvalidTagError, match="datetime or date"):
        date_tags(value, "day")  # type: ignore[arg-type]


def test_date_tags_are_valid_tags() -> None:
    tags = date_tags(WHEN, "hour")
    assert validate_tags(tags) == tags


# ------------------------------------------------------------- property-based

fixed_offsets = st.builds(
    timezone,
    st.timedeltas(
        min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
    ),
)


@given(st.datetimes(timezones=fixed_offsets))
@example(datetime(2027, 1, 1, 4, 59, tzinfo=PLUS_5))
@example(datetime(1, 1, 1, tzinfo=PLUS_5))
@example(datetime(999, 12, 31, 23, tzinfo=MINUS_5))
def test_date_tags_of_any_aware_datetime_agree_with_utc(when: datetime) -> None:
    try:
        utc = when.astimezone(UTC)
    except OverflowError:
        with pytest.raises(InvalidTagError):
            date_tags(when, "hour")
        return
    hour, day, week, month = date_tags(when, "hour")
    assert hour.removeprefix("hour=")[:10] == day.removeprefix("day=")
    assert day.removeprefix("day=").startswith(month.removeprefix("month="))
    iso = utc.isocalendar()
    assert week == f"week={iso.year:04d}-W{iso.week:02d}"
    assert day == f"day={utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
    assert hour == f"hour={utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}"
    assert date_tags(when, "day") == [day, week, month]
    assert date_tags(when, "week") == [week]
    assert date_tags(when, "month") == [month]


@given(st.datetimes())
def test_naive_datetime_tags_equal_those_of_the_same_utc_time(when: datetime) -> None:
    assert date_tags(when, "hour") == date_tags(when.replace(tzinfo=UTC), "hour")


@given(st.text(alphabet=st.characters(exclude_categories=()), max_size=300))
@example(" a")
@example("a\u2028b")
@example(unicodedata.normalize("NFD", "é" * 255))
def test_valid_tags_are_clean_and_validation_is_idempotent(text: str) -> None:
    try:
        tag = validate_tag(text)
    except InvalidTagError:
        return
    assert 1 <= len(tag) <= 255
    assert tag == tag.strip()
    assert unicodedata.is_normalized("NFC", tag)
    assert not any(unicodedata.category(ch) in ("Cc", "Cs") for ch in tag)
    assert validate_tag(tag) == tag
