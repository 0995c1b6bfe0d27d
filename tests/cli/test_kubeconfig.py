"""The kubeconfig `tidal up` writes and `tidal kubeconfig --merge` folds in."""

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
