"""The kubeconfig `tidal up` writes and `tidal kubeconfig --merge` folds in."""

import pytest
import yaml

from tidal.cli.kubeconfig import merge_into, write_kubeconfig


def test_kubeconfig_with_and_without_token(tmp_path):
    path = write_kubeconfig(tmp_path, "http://127.0.0.1:8081", None)
    config = yaml.safe_load(path.read_text())
    assert config["users"] == [{"name": "tidal", "user": {}}]
    assert path.stat().st_mode & 0o777 == 0o600
    config = yaml.safe_load(write_kubeconfig(tmp_path, "http://x", "s3cret").read_text())
    assert config["users"][0]["user"] == {"token": "s3cret"}
    assert config["contexts"][0]["context"]["cluster"] == "tidal"


def test_merge_keeps_the_users_config_and_replaces_old_tidal_entries(tmp_path):
    source = write_kubeconfig(tmp_path / "data", "http://new", None)
    target = tmp_path / "config"
    target.write_text(
        yaml.safe_dump(
            {
                "clusters": [
                    {"name": "prod", "cluster": {"server": "https://prod"}},
                    {"name": "tidal", "cluster": {"server": "http://old"}},
                ],
                "users": [{"name": "prod", "user": {"token": "p"}}],
                "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "prod"}}],
                "current-context": "prod",
            }
        )
    )
    merge_into(source, target)
    merged = yaml.safe_load(target.read_text())
    assert [c["name"] for c in merged["clusters"]] == ["prod", "tidal"]
    assert merged["clusters"][1]["cluster"]["server"] == "http://new"
    assert merged["users"][0] == {"name": "prod", "user": {"token": "p"}}
    assert merged["current-context"] == "prod"
    fresh = tmp_path / "fresh" / "config"
    merge_into(source, fresh)
    assert yaml.safe_load(fresh.read_text())["current-context"] == "tidal"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"a: [\n", "is not valid YAML"),
        (b"- a list\n", "is not a kubeconfig"),
        (b"clusters: {a: 1}\n", "clusters is not a list of entries"),
        (b"users: [x]\n", "users is not a list of entries"),
        (b"\xd8\x00binary", "not a UTF-8 text file"),
    ],
)
def test_merge_refuses_a_target_that_is_not_a_kubeconfig_and_leaves_it(tmp_path, content, problem):
    source = write_kubeconfig(tmp_path / "data", "http://new", None)
    target = tmp_path / "config"
    target.write_bytes(content)
    with pytest.raises(ValueError, match=problem):
        merge_into(source, target)
    assert target.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config", "data"]  # no partial file


def test_merge_writes_through_a_symlinked_config(tmp_path):
    source = write_kubeconfig(tmp_path / "data", "http://new", None)
    real = tmp_path / "dotfiles" / "kubeconfig"
    real.parent.mkdir()
    real.write_text("current-context: prod\n")
    link = tmp_path / "config"
    link.symlink_to(real)
    merge_into(source, link)
    assert link.is_symlink()
    merged = yaml.safe_load(real.read_text())
    assert merged["current-context"] == "prod" and merged["clusters"][0]["name"] == "tidal"
