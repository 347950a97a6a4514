"""The service's settings (`services.settings`): bad ones refused at start, naming the field."""

import re

import pytest

from services.settings import SettingsError, load_settings


def settings(tmp_path, **overrides):
    return load_settings(None, api_tokens=["token"], store_roots=[str(tmp_path)], **overrides)


@pytest.mark.parametrize("uri", ["file:/srv/mlruns", "/srv/mlruns", "ftp://host/runs"])
def test_an_unsupported_tracking_uri_is_refused_at_start(tmp_path, uri):
    with pytest.raises(SettingsError, match="tracking_uri") as caught:
        settings(tmp_path, tracking_uri=uri)
    assert "\n" not in str(caught.value)


def test_a_file_tracking_uri_is_told_what_to_use_instead(tmp_path):
    with pytest.raises(
        SettingsError, match=re.escape("use sqlite:////srv/mlruns/mlflow.db instead")
    ):
        settings(tmp_path, tracking_uri="file:/srv/mlruns")


@pytest.mark.parametrize(
    "uri", ["sqlite:////srv/mlflow.db", "postgresql+psycopg://u@h/db", "http://127.0.0.1:5000"]
)
def test_databases_and_servers_are_accepted(tmp_path, uri):
    assert settings(tmp_path, tracking_uri=uri).tracking == uri


def test_without_a_tracking_uri_jobs_log_to_sqlite_in_the_state_folder(tmp_path):
    state = tmp_path / "state"
    assert settings(tmp_path, state_dir=str(state)).tracking == (
        f"sqlite:///{state.resolve() / 'mlflow.db'}"
    )
