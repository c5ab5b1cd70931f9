"""find_model on a real DuckLake warehouse: by version, id, id prefix, latest, promoted and path."""

from __future__ import annotations

import os

import pytest

from tasks.ids import content_id
from tasks.prm.registry import ModelRef, RegistryError, find_model, promote, register_model
from warehouse.connection import commit, connect

# Ids are 32 hex digits; v1 and v3 share their first six, so six digits do not tell them apart.
IDS = {
    1: "abc123" + "1" * 26,
    2: "def456" + "2" * 26,
    3: "abc123" + "f" * 26,
    4: "0789ab" + "4" * 26,
}
KINDS = {1: "prm", 2: "orm", 3: "prm", 4: "orm"}  # the newest model is an ORM baseline


def model_dir(folder, version: int):
    path = folder / f"v{version}"
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}\n")
    return path


def register_four(warehouse, folder) -> None:
    """Four registered models, v1 promoted, committed as one snapshot."""
    connection = connect(warehouse)
    try:
        connection.execute("BEGIN")
        for version, model_id in IDS.items():
            register_model(connection, ModelRef(
                model_id=model_id, version=version, path=str(model_dir(folder, version)), base="tiny",
                dataset_version=1, dataset_snapshot=1, label_kind="hard", kind=KINDS[version],
            ), run_id=f"run-{version}")
        promote(connection, IDS[1])  # not the latest PRM: latest and promoted differ
        commit(connection, "test: four models")
    finally:
        connection.close()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """The four models, and a read-only connection to them (the tests only read: one warehouse)."""
    from schemas.config import WarehouseConfig

    root = tmp_path_factory.mktemp("registry")
    warehouse = WarehouseConfig(data_dir=root / "warehouse", catalog=os.environ.get("PRMFORGE_TEST_CATALOG", "sqlite"))
    register_four(warehouse, root / "models")
    reader = connect(warehouse, read_only=True)
    yield reader, root / "models"
    reader.close()


def found(connection, reference: str) -> tuple:
    model = find_model(connection, reference)
    return model.version, model.model_id, model.kind, model.promoted


def test_latest_is_the_newest_prm_not_the_newest_model(registry):
    connection, _ = registry
    assert found(connection, "latest") == (3, IDS[3], "prm", False)
    assert found(connection, " latest ") == (3, IDS[3], "prm", False)


def test_promoted_is_the_one_promoted_model(registry):
    connection, _ = registry
    assert found(connection, "promoted") == (1, IDS[1], "prm", True)
    assert [model for model in (find_model(connection, f"v{v}") for v in IDS) if model.promoted] == [
        find_model(connection, "promoted")
    ]


def test_versions_and_full_ids(registry):
    connection, _ = registry
    assert [found(connection, reference)[0] for reference in ("1", "v2", "V3", "v4", IDS[2], IDS[4])] == [1, 2, 3, 4, 2, 4]


def test_an_id_prefix_of_six_or_more_digits_names_one_model(registry):
    connection, _ = registry
    assert found(connection, "def456") == (2, IDS[2], "orm", False)
    assert found(connection, "abc1231") == (1, IDS[1], "prm", True)
    assert found(connection, "abc123f") == (3, IDS[3], "prm", False)
    assert found(connection, "0789ab") == (4, IDS[4], "orm", False)  # a prefix of digits, not version 789
    known = "registered models are v1, v2, v3, v4; or pass a model directory"
    with pytest.raises(RegistryError, match=f"^no model 'abc123': {known}$"):  # v1 and v3
        find_model(connection, "abc123")
    with pytest.raises(RegistryError, match=f"^no model 'def45': {known}$"):  # five digits are too few
        find_model(connection, "def45")


def test_a_registered_models_directory_is_that_model(registry, monkeypatch):
    connection, folder = registry
    assert found(connection, str(folder / "v2")) == (2, IDS[2], "orm", False)
    assert found(connection, str(folder / "v2") + "/") == (2, IDS[2], "orm", False)
    monkeypatch.chdir(folder)
    assert found(connection, "v1/../v4") == (4, IDS[4], "orm", False)  # resolved before comparing


def test_an_unregistered_directory_is_a_model_without_a_version(registry, tmp_path, monkeypatch):
    connection, _ = registry
    elsewhere = model_dir(tmp_path / "elsewhere", 1)
    expected = ModelRef(model_id=content_id("unregistered", elsewhere.resolve()), version=None, path=str(elsewhere))
    assert find_model(connection, str(elsewhere)) == expected
    assert find_model(None, str(elsewhere)) == expected  # no warehouse needed
    monkeypatch.chdir(tmp_path)  # the id hashes the resolved path, however the directory is named
    assert find_model(None, "elsewhere/v1") == ModelRef(model_id=expected.model_id, version=None, path="elsewhere/v1")
    (elsewhere / "config.json").unlink()
    with pytest.raises(RegistryError, match="^no model '.*': registered models are v1, v2, v3, v4; or pass a model directory$"):
        find_model(connection, str(elsewhere))


def test_no_model_yet(warehouse_config):
    connection = connect(warehouse_config)
    try:
        with pytest.raises(RegistryError, match=r"^no latest model: run `prmforge train`$"):
            find_model(connection, "latest")
        with pytest.raises(RegistryError, match=r"^no promoted model: run `prmforge train` or `prmforge nightly`$"):
            find_model(connection, "promoted")
        with pytest.raises(RegistryError, match=r"^no model 'v1': registered models are none yet \(run `prmforge train`\); "):
            find_model(connection, "v1")
    finally:
        connection.close()
    with pytest.raises(RegistryError, match=r"^no latest model"):
        find_model(None, "latest")


def test_nothing_promoted_is_an_error_even_with_models(warehouse_config, tmp_path):
    register_four(warehouse_config, tmp_path / "models")
    connection = connect(warehouse_config)
    try:
        connection.execute("BEGIN")
        connection.execute("UPDATE models SET promoted = false")
        commit(connection, "test: demote")
        with pytest.raises(RegistryError, match=r"^no promoted model"):
            find_model(connection, "promoted")
        assert found(connection, "latest") == (3, IDS[3], "prm", False)
    finally:
        connection.close()
