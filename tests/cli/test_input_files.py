"""A file that is not UTF-8 text (a binary, a Latin-1 export) is refused by every command that
reads one, naming the file, never with a codec traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tidal.api.config import load_config
from tidal.api.errors import InvalidSpec
from tidal.api.textfile import read_text
from tidal.cli.main import main

EXAMPLES = Path(__file__).parents[2] / "examples" / "simulate"
SERVICE, POOLS = str(EXAMPLES / "service.yaml"), str(EXAMPLES / "tidal.yaml")


@pytest.fixture
def latin1(tmp_path: Path) -> Path:
    path = tmp_path / "export.csv"
    path.write_bytes("timestamp,café\n1764547200,3\n".encode("latin-1"))
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["apply", "-f", "{f}"],
        ["backtest", "--history", "{f}"],
        ["history", "import", "hello", "--csv", "{f}"],
        ["simulate", "--trace", "{f}", "-f", SERVICE, "--pools", POOLS],
        ["simulate", "--trace", "synthetic", "-f", "{f}", "--pools", POOLS],
        ["simulate", "--trace", "synthetic", "-f", SERVICE, "--pools", "{f}"],
        ["simulate", "--trace", "synthetic", "-f", SERVICE, "--pools", POOLS, "--history", "{f}"],
        ["kubernetes", "manifests", "--config", "{f}"],
    ],
)
def test_a_file_that_is_not_utf8_is_named(latin1: Path, args: list[str]) -> None:
    argv = ["--server", "http://127.0.0.1:9", *(a.format(f=latin1) for a in args)]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 1, result.output
    assert f"{latin1}: not a UTF-8 text file (byte 0xe9 does not decode)" in result.output


def test_a_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfkind: Service\n")
    assert read_text(path) == "kind: Service\n"


def test_tidal_ups_config_names_the_file(latin1: Path) -> None:
    with pytest.raises(InvalidSpec, match=r"export\.csv: not a UTF-8 text file"):
        load_config(latin1)
