"""`Catalog`: the catalog of one repository, one class over the query mixins.

Each mixin holds the queries of one subject (the map is in the package docstring); the
connection, transactions and schema set-up come from `base`.
"""

from __future__ import annotations

from .archiving import ArchiveQueries
from .bulk import BulkQueries, NewVersion
from .copies import CopyQueries, HostCopy, HostSummary
from .dump import BackupRecord, DumpQueries
from .purge import PurgeQueries
from .records import FileRecord
from .replay import ReplayQueries
from .replica_batches import ReplicaBatchQueries
from .replicas import Replica, ReplicaQueries
from .store_rows import StoreRowQueries
from .tagging import TagQueries
from .versions import VersionQueries

__all__ = [
    "BackupRecord",
    "Catalog",
    "FileRecord",
    "HostCopy",
    "HostSummary",
    "NewVersion",
    "Replica",
]


class Catalog(
    VersionQueries,
    TagQueries,
    CopyQueries,
    BulkQueries,
    PurgeQueries,
    ReplayQueries,
    DumpQueries,
    ArchiveQueries,
    ReplicaQueries,
    ReplicaBatchQueries,
    StoreRowQueries,
):
    """The catalog of one repository: files, paths, tags and hosts."""
