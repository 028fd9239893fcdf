import pytest
import yaml

from tomodenoise.cli import apply_sets, main, make_parser
from tomodenoise.config import RunConfig


def test_config_command_prints_valid_yaml(capsys):
    assert main(["config"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert RunConfig.model_validate(data) == RunConfig()


def test_set_overrides_are_validated():
    cfg = apply_sets(RunConfig(), ["train.epochs=7", "splits.k=3", "model.params={depth: 5}"])
    assert cfg.train.epochs == 7 and cfg.splits.k == 3 and cfg.model.params == {"depth": 5}
    with pytest.raises(Exception):
        apply_sets(RunConfig(), ["train.nonsense=1"])
    with pytest.raises(SystemExit):
        apply_sets(RunConfig(), ["no-equals-sign"])


def test_run_requires_out():
    with pytest.raises(SystemExit):
        make_parser().parse_args(["run", "scan.h5"])


def test_missing_scan_is_a_clear_error(tmp_path, capsys):
    rc = main(["check", str(tmp_path / "nope.h5")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "nope.h5" in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("argv, message", [
    (["--set", "model.params={deepth: 3}"], "deepth"),
    (["--set", "recon.filter=bogus"], "bogus"),
    (["--set", "train.nonsense=1"], "nonsense"),
    (["--reference", "missing.npy"], "missing.npy"),
])
def test_run_reports_user_errors_in_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    scan = tmp_path / "scan.npy"
    scan.write_bytes(b"")  # never read: the configuration is refused first
    out = tmp_path / "out"
    rc = main(["run", str(scan), "--out", str(out), *argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error:") and message in err
    assert "Traceback" not in err
    assert not out.exists()


def test_bad_yaml_config_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "run.yaml"
    bad.write_text("train: [unclosed\n")
    assert main(["check", str(tmp_path / "scan.h5"), "-c", str(bad)]) == 2
    assert capsys.readouterr().err.startswith("error:")


def test_simulate_refuses_to_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "scan.h5"
    out.write_bytes(b"precious")
    assert main(["simulate", "foam", "--out", str(out), "--size", "16", "--angles", "8", "--slices", "1"]) == 2
    assert "--force" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert main(["simulate", "foam", "--out", str(out), "--size", "16", "--angles", "8", "--slices", "1",
                 "--spheres", "5", "--force"]) == 0
    assert out.read_bytes() != b"precious"
