"""The catalog: schema, migrations and every SQL query (PostgreSQL or SQLite).

`Catalog` is one class over query mixins, one module per subject (subject -> module):

* versions and their states -> `versions` (`VersionQueries`): add, get, current, history,
  list, upload, rekey, publish, expire (one or many), counts; versions by object key.
* tags -> `tagging` (`TagQueries`): the tags of versions and of paths, and `find`,
  whose plans (by tags or by path, limited, paged, counted) are in `finding`, a
  module of functions `tagging` calls.
* hosts and their cached copies -> `copies` (`CopyQueries`): which host holds which
  verified copy; the hosts and what their caches hold.
* adding many versions at once (`Repo.add_tree`) -> `bulk` (`BulkQueries`).
* garbage collection -> `purge` (`PurgeQueries`): what may go, claims, forgetting rows.
* copies in the repository's other stores -> `replicas` (`ReplicaQueries`): reading,
  losing, dropping and forgetting copies; the versions replication walks. Claims and
  verifications of copies, one or many in one transaction -> `replica_batches`
  (`ReplicaBatchQueries`).
* what each store holds, and forgetting a retired store -> `store_rows` (`StoreRowQueries`).
* archival storage classes -> `archiving` (`ArchiveQueries`): recording a move.
* journal entries -> `replay` (`ReplayQueries`): each commit's entry, and replaying
  entries on restore.
* backups and restores -> `dump` (`DumpQueries`): dumping and loading whole tables, the
  steps of a restore, the record of the backups taken; over `content` (a backed-up
  table's formats, read as rows or copied in) and `loading` (PostgreSQL: bare tables
  filled, then their keys, indexes and foreign keys built, on several connections).
* checking the store against the catalog -> `verification` (functions).
* PostgreSQL roles for least privilege -> `roles` (`create_roles`).
* who else holds the catalog's locks (for destroy, restore, migrations) -> `activity`.
* waking waiters (`Repo.wait`) -> `notices`: the notice a commit that publishes or tags
  sends (PostgreSQL ``NOTIFY``), and the `Listener` that waits for it.

Layers, each importing only from the layers below it, never from one above:

1. `catalog`: the `Catalog` class, composing the mixins.
2. The subject modules above (no one of them imports another).
3. `base`: `CatalogBase`, the mixins' base: connection, transactions, schema set-up, and
   the interning of paths and tags.
4. `migrations`: creating and upgrading the schema; `notices` (over `translate`).
5. `tag_index`: ``current_tags``, the tags of the current versions, kept in step by every
   write that changes them.
6. `records` (`FileRecord`, over `schema`), and the leaves, which import nothing of the
   catalog: `arrays` (SQL array parameters, `IN_BATCH`), `schema` (the tables),
   `connection` (engines, transactions: autocommit until the first write) over
   `translate` (database errors as `RepoError`s).
"""

from __future__ import annotations

from .catalog import (
    BackupRecord,
    Catalog,
    FileRecord,
    HostCopy,
    HostSummary,
    NewVersion,
    Replica,
)
from .schema import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION",
    "BackupRecord",
    "Catalog",
    "FileRecord",
    "HostCopy",
    "HostSummary",
    "NewVersion",
    "Replica",
]
