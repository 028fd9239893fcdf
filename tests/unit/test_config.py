import pytest
from pydantic import ValidationError

from tomodenoise.config import ConfigError, RunConfig, demo_config


def test_yaml_round_trip():
    cfg = demo_config()
    cfg.input.path = "/data/scan.h5"
    cfg.splits.k = 3
    again = RunConfig.from_yaml(cfg.to_yaml())
    assert again == cfg
    assert again.model.params == cfg.model.params


def test_unknown_keys_are_errors():
    with pytest.raises(ValidationError, match="extra"):
        RunConfig.model_validate({"train": {"epochz": 3}})
    with pytest.raises(ValidationError):
        RunConfig.model_validate({"nonsense": {}})


def test_bad_values_are_errors():
    with pytest.raises(ValidationError):
        RunConfig.model_validate({"splits": {"k": 1}})
    with pytest.raises(ValidationError):
        RunConfig.model_validate({"model": {"name": "resnet9000"}})
    with pytest.raises(ValidationError):
        RunConfig.model_validate({"train": {"strategy": "2:2"}})


def test_file_round_trip(tmp_path):
    cfg = RunConfig()
    path = cfg.save(tmp_path / "run.yaml")
    assert RunConfig.from_file(path) == cfg
    (tmp_path / "bad.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        RunConfig.from_file(tmp_path / "bad.yaml")


def test_demo_config_overrides_are_validated():
    from tomodenoise.config import demo_config

    cfg = demo_config(train={"epochs": 5}, splits={"k": 3})
    assert cfg.train.epochs == 5 and cfg.train.max_minutes == demo_config().train.max_minutes
    assert cfg.splits.k == 3
    with pytest.raises(ValueError):
        demo_config(train={"epochs": 0})
    with pytest.raises(ValueError):
        demo_config(trian={"epochs": 5})


def test_a_removed_setting_is_an_error_that_says_so(caplog):
    with pytest.raises(ConfigError, match="splits.scheme was removed and had no effect"):
        RunConfig.from_yaml("splits:\n  k: 4\n  scheme: random\n")
    assert "scheme" not in RunConfig().model_dump()["splits"]
    # what `tomodenoise config` used to write still reads, with a warning: old run.yaml files keep working
    with caplog.at_level("WARNING"):
        cfg = RunConfig.from_yaml("splits:\n  k: 3\n  scheme: interlaced\n")
    assert cfg.splits.k == 3 and "splits.scheme was removed" in caplog.text


def test_set_overrides_parse_once_for_the_cli_and_the_api():
    from tomodenoise.config import apply_sets, parse_sets

    assert parse_sets(["train.epochs=5", "train.lr=1e-3", "input.scan_id=abc", "train.patch_size=null"]) == {
        "train": {"epochs": 5, "lr": 1e-3, "patch_size": None}, "input": {"scan_id": "abc"}}
    for bad in (["epochs"], ["train.=3"], ["train=5", "train.epochs=3"]):
        with pytest.raises(ConfigError):
            parse_sets(bad)
    base = RunConfig(model={"name": "msd", "params": {"depth": 10, "width": 2}})
    cfg = apply_sets(base, ["model.params.depth=5", "train.lr=1e-3", "splits.k=3"])
    assert cfg.model.params == {"depth": 5, "width": 2} and cfg.train.lr == 1e-3 and cfg.splits.k == 3
    with pytest.raises(ConfigError, match="not a configuration section"):
        apply_sets(RunConfig(), ["train.epochs.x=1"])
    with pytest.raises(ConfigError):
        apply_sets(RunConfig(), ["train.nonsense=1"])
