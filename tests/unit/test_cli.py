import pytest
import yaml

from tomodenoise.cli import apply_sets, main, make_parser
from tomodenoise.config import ConfigError, RunConfig


def test_config_command_prints_valid_yaml(capsys):
    assert main(["config"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert RunConfig.model_validate(data) == RunConfig()


def test_set_overrides_are_validated():
    cfg = apply_sets(RunConfig(), ["train.epochs=7", "splits.k=3", "model.params={depth: 5}"])
    assert cfg.train.epochs == 7 and cfg.splits.k == 3 and cfg.model.params == {"depth": 5}
    with pytest.raises(Exception):
        apply_sets(RunConfig(), ["train.nonsense=1"])
    with pytest.raises(ConfigError):
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


def test_check_plans_every_stage_and_refuses_what_a_run_would(tmp_path, capsys):
    from tomodenoise.pipeline import ingest
    from tomodenoise.simulate.scan import simulate_foam_scan

    a = simulate_foam_scan(tmp_path / "a" / "foam.h5", size=16, n_angles=16, n_slices=2, seed=1, n_spheres=5)
    b = simulate_foam_scan(tmp_path / "b" / "foam.h5", size=16, n_angles=16, n_slices=2, seed=2, n_spheres=5)
    out = tmp_path / "out"
    assert main(["check", str(a["scan"]), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "reconstruct: 4 of 4 chunks in" in text  # 4 splits x 1 slab of 2 slices
    for stage in ("ingest", "train", "denoise", "report"):
        assert f"  {stage}: " in text
    assert not out.exists()  # nothing written
    # a store holding another scan under the same id: refused by check as by run
    cfg = RunConfig()
    cfg.input.path, cfg.output.root = str(a["scan"]), str(out)
    ingest(cfg)
    assert main(["check", str(a["scan"]), "--out", str(out)]) == 0
    assert "  ingest: already complete" in capsys.readouterr().out
    assert main(["check", str(b["scan"]), "--out", str(out)]) == 2
    assert "already holds the results of" in capsys.readouterr().err
    # ranks the machine cannot run (more GPU ranks than GPUs: none here)
    assert main(["check", str(a["scan"]), "--out", str(tmp_path / "o2"), "--set", "train.ranks=2",
                 "--set", "train.device=cuda"]) == 2
    assert "cuda" in capsys.readouterr().err.lower()
    assert not (tmp_path / "o2").exists()


def test_bench_moved_names_the_replacement(capsys):
    assert main(["bench", "foam", "--out", "x", "--minutes", "3"]) == 2
    err = capsys.readouterr().err
    assert "python -m benchmarks foam --out x --minutes 3" in err and err.count("\n") == 1


@pytest.mark.parametrize("yaml_text, argv, message", [
    ("train:\n  epochs: [1\nsplits: {k: 1}\n", [], "run.yaml line 3, column 7: expected ',' or ']'"),
    ("splits:\n  k: 1\n", [], "run.yaml: splits.k = 1: must be >= 2"),
    ("recon:\n  algorithm: art\n", [], "run.yaml: recon.algorithm = 'art': must be one of 'fbp', 'sirt'"),
    ("", ["--set", "train.epochs"], "--set train.epochs: expected section.key=value"),
    ("", ["--set", "=5"], "--set =5: expected section.key=value"),
    ("", ["--set", "train.epochs.x=1"], "'epochs' is not a configuration section"),
    ("", ["--set", "splits.k=1"], "--set splits.k=1: splits.k = 1: must be >= 2"),
])
def test_configuration_errors_are_one_sentence_with_exit_2(tmp_path, capsys, yaml_text, argv, message):
    config = tmp_path / "run.yaml"
    config.write_text(yaml_text)
    out = tmp_path / "out"
    assert main(["check", str(tmp_path / "scan.h5"), "--out", str(out), "-c", str(config), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    for text in ("validation error", "For further information", "<unicode string>", "Traceback"):
        assert text not in err
    assert not out.exists()


def test_a_symlink_loop_is_bad_input_exit_2(tmp_path, capsys):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert main(["check", str(tmp_path / "a")]) == 2  # the scan path: Path.resolve() finds the loop
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'a'} is a symbolic link loop") and err.count("\n") == 1
    assert main(["check", str(tmp_path / "scan.h5"), "-c", str(tmp_path / "b")]) == 2  # the configuration file
    err = capsys.readouterr().err
    assert f"configuration file {tmp_path / 'b'}" in err and err.count("\n") == 1


def test_an_oserror_elooping_is_one_sentence_exit_2(monkeypatch, capsys):
    import errno

    import tomodenoise.cli as cli

    def loop(args):
        raise OSError(errno.ELOOP, "Too many levels of symbolic links", "/data/loop")
    monkeypatch.setattr(cli, "cmd_check", loop)
    monkeypatch.setattr(cli, "make_parser", lambda: _parser_calling(loop))
    assert main(["check", "x"]) == 2
    assert capsys.readouterr().err == ("error: /data/loop is a symbolic link loop (a link that leads, through others, "
                                       "back to itself): fix or remove the link\n")


def _parser_calling(func):
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("cmd")
    parser.add_argument("scan")
    parser.set_defaults(func=func)
    return parser
