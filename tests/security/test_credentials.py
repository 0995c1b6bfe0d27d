"""Token creation, the lock and where a CLI finds the token, without a platform."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tidal.security.credentials import find_credentials, local_urls, record_server
from tidal.security.datadir import DataDirInUse, DataDirLock, ensure_token, prepare


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def test_the_token_is_made_once_owner_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    prepare(data)
    token = ensure_token(data)
    assert len(token) >= 40 and ensure_token(data) == token
    assert stat.S_IMODE((data / "admin-token").stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700


def test_the_lock_refuses_a_second_holder_until_released(tmp_path: Path) -> None:
    prepare(tmp_path / "data")
    first = DataDirLock(tmp_path / "data").acquire()
    with pytest.raises(DataDirInUse, match=f"pid {os.getpid()}"):
        DataDirLock(tmp_path / "data").acquire()
    first.release()
    DataDirLock(tmp_path / "data").acquire().release()


def test_the_cli_finds_what_up_recorded(tmp_path: Path, config_home: Path) -> None:
    data = tmp_path / "srv"
    prepare(data)
    token = ensure_token(data)
    record_server(local_urls("https", "0.0.0.0", 9443), data / "admin-token", tmp_path / "c.pem")
    assert find_credentials("https://localhost:9443/") == (token, str(tmp_path / "c.pem"))
    assert find_credentials("https://127.0.0.1:9443") == (token, str(tmp_path / "c.pem"))
    assert find_credentials("https://127.0.0.1:9999") == (None, None)
    assert stat.S_IMODE((config_home / "tidal" / "servers.json").stat().st_mode) == 0o600
    assert token not in (config_home / "tidal" / "servers.json").read_text()  # paths only


def test_the_default_data_dir_is_used_for_loopback_servers_only(tmp_path: Path) -> None:
    prepare(tmp_path / ".tidal")
    token = ensure_token(tmp_path / ".tidal")
    assert find_credentials("http://127.0.0.1:8081")[0] == token
    assert find_credentials("http://tidal.example.com:8081")[0] is None  # never sent away
