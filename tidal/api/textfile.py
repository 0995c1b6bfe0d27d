"""The user's text files (manifests, configs, traces, history CSVs) are UTF-8, a byte-order mark
allowed (spreadsheets write one). A file that is not, a binary or a Latin-1 export, is refused
with its name and the first byte that does not decode, not a codec traceback."""

from __future__ import annotations

from pathlib import Path


def not_text(path: str | Path, error: UnicodeDecodeError) -> ValueError:
    """The error to raise for `path` when reading it as UTF-8 failed with `error`."""
    byte = error.object[error.start]
    return ValueError(f"{path}: not a UTF-8 text file (byte 0x{byte:02x} does not decode)")


def read_text(path: str | Path) -> str:
    """The whole file as text; OSError as open() raises it, ValueError when it is not UTF-8."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise not_text(path, exc) from None
