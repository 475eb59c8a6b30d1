"""`record` builds a FileRecord from a `select_files` row by position."""

from __future__ import annotations

import dataclasses

from repo.catalog.records import FileRecord, select_files


def test_select_files_columns_are_the_record_fields_in_order() -> None:
    columns = [c.name for c in select_files().selected_columns]
    assert columns == [f.name for f in dataclasses.fields(FileRecord)]
