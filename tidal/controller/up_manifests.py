"""`tidal up -f FILE`: which of the start's manifests to apply (docs/architecture.md#state).

An apply replaces the stored object whole, so applying an unchanged file again at every start
would undo what was changed since through the API: a rollback with `tidal traffic`, a kubectl
patch, a change made in the console. So a manifest is applied when its object is not stored, or
when the document differs from the one an earlier start applied; otherwise the stored object is
kept as it is. `<data-dir>/up-manifests.json` holds the digest of each document applied so.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

RECORD = "up-manifests.json"


def object_key(doc: Mapping[str, Any]) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind')}/{meta.get('namespace') or 'default'}/{meta.get('name')}"


def digest(doc: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def to_apply(
    docs: list[dict[str, Any]],
    applied_before: Mapping[str, str],
    is_stored: Callable[[str], bool],
) -> list[dict[str, Any]]:
    """The documents whose object is not stored (`is_stored(object_key)`), or that differ from
    what an earlier start applied."""
    return [
        doc
        for doc in docs
        if not is_stored(object_key(doc)) or applied_before.get(object_key(doc)) != digest(doc)
    ]


def load_record(data_dir: Path) -> dict[str, str]:
    """Digests of what earlier starts applied; none when the file is missing or unreadable
    (then every manifest is applied, as before the file existed)."""
    try:
        record = json.loads((data_dir / RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def save_record(data_dir: Path, record: Mapping[str, str], docs: list[dict[str, Any]]) -> None:
    """`record` with the digests of `docs`, written whole or not at all."""
    updated = {**record, **{object_key(doc): digest(doc) for doc in docs}}
    partial = data_dir / f"{RECORD}.partial"
    partial.write_text(json.dumps(updated, indent=1, sort_keys=True))
    os.replace(partial, data_dir / RECORD)
