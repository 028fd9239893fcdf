import pytest
import yaml

from tomodenoise.cli import _apply_sets, main, make_parser
from tomodenoise.config import RunConfig


def test_config_command_prints_valid_yaml(capsys):
    assert main(["config"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert RunConfig.model_validate(data) == RunConfig()


def test_set_overrides_are_validated():
    cfg = _apply_sets(RunConfig(), ["train.epochs=7", "splits.k=3", "model.params={depth: 5}"])
    assert cfg.train.epochs == 7 and cfg.splits.k == 3 and cfg.model.params == {"depth": 5}
    with pytest.raises(Exception):
        _apply_sets(RunConfig(), ["train.nonsense=1"])
    with pytest.raises(SystemExit):
        _apply_sets(RunConfig(), ["no-equals-sign"])


def test_run_requires_out():
    with pytest.raises(SystemExit):
        make_parser().parse_args(["run", "scan.h5"])


def test_missing_scan_is_a_clear_error(tmp_path, capsys):
    rc = main(["check", str(tmp_path / "nope.h5")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "nope.h5" in err
    assert not any(tmp_path.iterdir())
