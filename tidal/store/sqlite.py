"""A resource store with Kubernetes semantics on one SQLite file.

Objects are plain dicts shaped like Kubernetes objects (apiVersion, kind, metadata, spec, status),
keyed by kind/namespace/name. Every write bumps a store-wide resourceVersion; a write may name the
version it expects and fails with Conflict if the object moved on. Several writes can be grouped in
one transaction so that an apply of many documents stores all or nothing.

A write that SQLite refuses (a full disk, an I/O error) raises StoreError with what failed, after
the transaction is rolled back, so that callers can change nothing else (docs/security.md). The
file is created owner-only (0600); SQLite gives its -wal and -shm files the same mode.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    resource_version INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('resourceVersion', 0);
"""
# The label that ties revisions (and routes) to their service: listing by it is indexed, so
# one service's revisions cost what they are, not what every revision of the namespace is.
INDEXED_LABEL = "serving.knative.dev/service"
_INDEXED_VALUE = f"json_extract(body, '$.metadata.labels.\"{INDEXED_LABEL}\"')"
INDEX = (
    "CREATE INDEX IF NOT EXISTS resources_by_service "
    f"ON resources (kind, namespace, {_INDEXED_VALUE})"
)


# Told of every committed write: ("ADDED" | "MODIFIED" | "DELETED", the object as stored).
Listener = Callable[[str, dict[str, Any]], None]


class Conflict(Exception):
    """The object changed since the version the writer read."""


class StoreError(Exception):
    """The state store refused a read or write; the message says what and why."""

    def __init__(self, message: str, full: bool = False) -> None:
        super().__init__(message)
        self.full = full


SQLITE_FULL = 13


def store_error(exc: sqlite3.Error, path: Path) -> StoreError:
    """A StoreError naming the cause: "state store full: ..." for SQLITE_FULL."""
    if getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL or "full" in str(exc):
        return StoreError(f"state store full: {exc} ({path}); nothing was changed", full=True)
    return StoreError(f"state store failed: {exc} ({path}); nothing was changed")


def open_state_file(path: Path, schema: str, timeout_s: float = 5.0) -> sqlite3.Connection:
    """A connection to the state file in WAL mode (autocommit: callers begin their own
    transactions) with `schema` created. A file that is not SQLite, or is damaged, is a
    StoreError that names it and says what can be done, not sqlite's bare 'file is not a
    database'."""
    db = sqlite3.connect(path, isolation_level=None, timeout=timeout_s, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(schema)
    except sqlite3.OperationalError as exc:  # locked, read-only, full: the file itself is fine
        db.close()
        raise store_error(exc, path) from None
    except sqlite3.DatabaseError as exc:
        db.close()
        raise StoreError(
            f"{path} is not a tidal state file or is damaged ({exc}): restore a copy, or move "
            "it aside to start with no services and no history"
        ) from None
    return db


@contextmanager
def _translated(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise store_error(exc, path) from exc


def create_private(path: Path) -> None:
    """Create `path` with mode 0600 if it does not exist, and make it 0600 if it does."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)


def rfc3339(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        create_private(self.path)
        self._db = open_state_file(self.path, f"{SCHEMA};\n{INDEX};")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._in_txn = False
        self.listeners: list[Listener] = []  # e.g. the Kubernetes API's watches
        self._pending: list[tuple[str, dict[str, Any]]] = []

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes: all land or none do. Nested use joins the outer transaction."""
        if self._in_txn:
            yield
            return
        with _translated(self.path):
            self._db.execute("BEGIN IMMEDIATE")
        self._in_txn = True
        try:
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # a failed COMMIT may leave it open
                    self._db.execute("ROLLBACK")
                self._pending.clear()  # listeners hear of committed writes only
                raise
        except sqlite3.Error as exc:
            raise store_error(exc, self.path) from exc
        finally:
            self._in_txn = False
        self._notify()

    def _changed(self, event: str, body: str) -> None:
        if self.listeners:
            self._pending.append((event, json.loads(body)))
            if not self._in_txn:
                self._notify()

    def _notify(self) -> None:
        pending, self._pending = self._pending, []
        for event, obj in pending:
            for listener in self.listeners:
                listener(event, obj)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT body FROM resources WHERE kind=? AND namespace=? AND name=?",
            (kind, namespace, name),
        ).fetchone()
        return None if row is None else json.loads(row[0])

    def list(
        self, kind: str, namespace: str | None = None, labels: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        if namespace is not None and labels and INDEXED_LABEL in labels:
            rows = self._db.execute(
                # Named: without statistics SQLite prefers the primary key for its order.
                "SELECT body FROM resources INDEXED BY resources_by_service "
                f"WHERE kind=? AND namespace=? AND {_INDEXED_VALUE}=? ORDER BY name",
                (kind, namespace, labels[INDEXED_LABEL]),
            )
        elif namespace is None:
            rows = self._db.execute(
                "SELECT body FROM resources WHERE kind=? ORDER BY namespace, name", (kind,)
            )
        else:
            rows = self._db.execute(
                "SELECT body FROM resources WHERE kind=? AND namespace=? ORDER BY name",
                (kind, namespace),
            )
        objects = [json.loads(body) for (body,) in rows]
        if labels:
            objects = [
                o
                for o in objects
                if all(o["metadata"].get("labels", {}).get(k) == v for k, v in labels.items())
            ]
        return objects

    def namespaces(self) -> list[str]:
        """Every namespace something is stored in."""
        rows = self._db.execute("SELECT DISTINCT namespace FROM resources ORDER BY namespace")
        return [namespace for (namespace,) in rows]

    def put(self, obj: dict[str, Any], expected_version: str | None = None) -> dict[str, Any]:
        """Create or replace `obj`; fill in server-set metadata; return the stored object."""
        meta = obj["metadata"]
        kind, namespace, name = obj["kind"], meta.get("namespace", "default"), meta["name"]
        with self.transaction():
            current = self.get(kind, namespace, name)
            if expected_version is not None and (
                current is None or current["metadata"]["resourceVersion"] != expected_version
            ):
                raise Conflict(
                    f"{kind} {namespace}/{name} was modified (expected resourceVersion "
                    f"{expected_version}); read it again and retry"
                )
            version = self._next_version()
            meta["namespace"] = namespace
            meta["resourceVersion"] = str(version)
            if current is None:
                meta["uid"] = str(uuid.uuid4())
                meta["creationTimestamp"] = now_rfc3339()
            else:
                meta["uid"] = current["metadata"]["uid"]
                meta["creationTimestamp"] = current["metadata"]["creationTimestamp"]
            body = json.dumps(obj, sort_keys=True)
            self._db.execute(
                "INSERT OR REPLACE INTO resources VALUES (?, ?, ?, ?, ?)",
                (kind, namespace, name, version, body),
            )
            self._changed("ADDED" if current is None else "MODIFIED", body)
        return obj

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        with self.transaction():
            rows = self._db.execute(
                "DELETE FROM resources WHERE kind=? AND namespace=? AND name=? RETURNING body",
                (kind, namespace, name),
            ).fetchall()
            for (body,) in rows:
                self._changed("DELETED", body)
        return bool(rows)

    def _next_version(self) -> int:
        self._db.execute("UPDATE counters SET value = value + 1 WHERE name='resourceVersion'")
        (value,) = self._db.execute(
            "SELECT value FROM counters WHERE name='resourceVersion'"
        ).fetchone()
        return int(value)
