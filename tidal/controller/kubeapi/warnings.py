"""Warnings for a write that is taken but may not do what its author meant, in the API server's
`Warning: 299 - "..."` response header, which kubectl prints as `Warning: ...`.

The one there is: a relative `workingDir` of a container run as a process. `tidal apply -f
FILE` resolves it against the file's folder; kubectl sends the document and not where its file
was, so it is taken relative to the folder `tidal up` runs in (docs/kubectl.md), and a bundled
example applied from the repository's root would start in the wrong folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aiohttp import web


def write_warnings(obj: dict[str, Any]) -> list[str]:
    """What kubectl should print for the write of `obj` (as stored)."""
    if obj.get("kind") != "Service":
        return []
    pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    warnings = []
    for field in ("initContainers", "containers"):
        for index, container in enumerate(pod.get(field) or []):
            folder = container.get("workingDir") if isinstance(container, dict) else None
            if not folder or not isinstance(folder, str) or os.path.isabs(folder):
                continue
            if container.get("image"):
                continue  # a folder in the image, the engine's to resolve
            warnings.append(
                f"spec.template.spec.{field}[{index}].workingDir {folder!r} is relative, and "
                f"kubectl does not send where the manifest was: it is {Path(folder).resolve()} "
                "(from the folder tidal up runs in). Write it absolute, or apply the file with "
                "`tidal apply -f FILE`, which resolves it against the file's folder"
            )
    return warnings


def written(obj: dict[str, Any], status: int = 200) -> web.Response:
    """The answer to a write: the object, and a Warning header for each of its warnings."""
    response = web.json_response(obj, status=status)
    for message in write_warnings(obj):
        escaped = message.replace("\\", "\\\\").replace('"', '\\"')
        ascii_only = escaped.encode("ascii", "backslashreplace").decode()  # a header's bytes
        response.headers.add("Warning", f'299 - "{ascii_only}"')
    return response
