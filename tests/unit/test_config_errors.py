"""A configuration that cannot be used is one ConfigError sentence: where (the file, the --set item,
the overrides), the key's full dotted name, the value given and what is accepted; no pydantic or
PyYAML text."""

import logging

import pytest

from tomodenoise.config import ConfigError, RunConfig, apply_sets, demo_config, parse_sets

PYDANTIC = ("validation error", "For further information", "errors.pydantic.dev", "Input should be")
PYYAML = ("<unicode string>", "^", "in \"")


def one_sentence(exc: ConfigError) -> str:
    text = str(exc)
    assert "\n" not in text and not any(p in text for p in PYDANTIC + PYYAML), text
    return text


@pytest.mark.parametrize("yaml_text, key_value, accepted", [
    ("splits:\n  k: 1\n", "splits.k = 1", "must be >= 2"),
    ("splits:\n  k: 1.5\n", "splits.k = 1.5", "must be a whole number"),
    ("splits:\n  k: x\n", "splits.k = 'x'", "must be an integer"),
    ("recon:\n  algorithm: art\n", "recon.algorithm = 'art'", "must be one of 'fbp', 'sirt'"),
    ("recon:\n  filter: bogus\n", "recon.filter = 'bogus'", "unknown FBP filter 'bogus'"),
    ("splits:\n  kk: 3\n", "splits.kk = 3", "unknown key (did you mean k?); known keys of splits: k"),
    ("nonsense: {}\n", "nonsense = {}", "unknown section; known sections: input, preprocess"),
    ("train:\n  epochs: 0\n", "train.epochs = 0", "must be >= 1 or 'auto'"),
    ("train:\n  epochs: many\n", "train.epochs = 'many'", "must be an integer or 'auto'"),
    ("train:\n  lr: -1\n", "train.lr = -1", "must be > 0 or 'auto'"),
    ("train: oops\n", "train = 'oops'", "must be a mapping"),
    ("train:\n  augment: maybe\n", "train.augment = 'maybe'", "must be true or false"),
    ("compute:\n  n_workers: 1.5\n", "compute.n_workers = 1.5", "must be a whole number"),
    ("input:\n  slices: [1, 2, 3]\n", "input.slices = [1, 2, 3]", "must have at most 2 items"),
    ("input:\n  slices: [1]\n", "input.slices = [1]", "too few items"),
    ("output:\n  export: [png]\n", "output.export[0] = 'png'", "must be one of 'ome-zarr', 'tiff'"),
    ("model:\n  name: resnet\n", "model", "unknown model 'resnet'; available:"),
    ("model:\n  params: {deepth: 3}\n", "model", "has no parameter(s) deepth"),
    ("splits:\n  scheme: random\n", "splits", "splits.scheme was removed and had no effect"),
])
def test_a_refused_setting_in_a_file_is_one_sentence_naming_file_key_value_and_remedy(
        tmp_path, yaml_text, key_value, accepted):
    path = tmp_path / "run.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as exc:
        RunConfig.from_file(path)
    text = one_sentence(exc.value)
    assert text.startswith(f"{path}: {key_value}") and accepted in text
    assert exc.value.source == str(path)


def test_several_refused_settings_list_the_first_and_count_the_rest():
    with pytest.raises(ConfigError) as exc:
        RunConfig.from_yaml("splits: {k: 1}\ntrain: {epochs: 0, lr: 0, strategy: x}\n", "run.yaml")
    text = one_sentence(exc.value)
    assert text.startswith("run.yaml: 4 settings are refused: (1) splits.k = 1: must be >= 2;")
    assert "(3)" in text and "(4)" not in text and text.endswith("; and 1 more")
    assert set(exc.value.keys) == {"splits.k", "train.epochs", "train.lr", "train.strategy"}


@pytest.mark.parametrize("text, expected", [
    ("train: [unclosed\n", "run.yaml line 2, column 1: expected ',' or ']', but got '<stream end>' "
                           "(while parsing a flow sequence that starts at line 1, column 8)"),
    ("train:\n  epochs: 3\n  lr: [1\nsplits: {k: 1}\n", "run.yaml line 4, column 7: expected ',' or ']'"),
    ("a: b: c\n", "run.yaml line 1, column 5: mapping values are not allowed here"),
    ("x: \x07\n", "run.yaml is not valid YAML: unacceptable character"),
    ("- just\n- a list\n", "run.yaml: the configuration must be a mapping of sections"),
])
def test_malformed_yaml_names_the_file_line_and_column(tmp_path, caplog, text, expected):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with caplog.at_level(logging.DEBUG, logger="tomodenoise"), pytest.raises(ConfigError) as exc:
        RunConfig.from_file(path)
    assert one_sentence(exc.value).startswith(str(tmp_path / expected))
    if "line" in expected:  # PyYAML's own text stays in the log, at DEBUG
        assert any(r.levelno == logging.DEBUG and "<unicode string>" in r.getMessage() for r in caplog.records)


def test_an_unreadable_file_is_named(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    for path, why in ((tmp_path / "a", "symbolic links"), (tmp_path / "missing.yaml", "No such file"),
                      (tmp_path, "directory")):
        with pytest.raises(ConfigError) as exc:
            RunConfig.from_file(path)
        assert one_sentence(exc.value).startswith(f"cannot read the configuration file {path}: ")
        assert why in str(exc.value)


@pytest.mark.parametrize("sets, expected", [
    (["splits.k=1"], "--set splits.k=1: splits.k = 1: must be >= 2"),
    (["recon.algorithm=art"], "--set recon.algorithm=art: recon.algorithm = 'art': must be one of 'fbp', 'sirt'"),
    (["train.epochz=3"], "--set train.epochz=3: train.epochz = 3: unknown key (did you mean epochs?)"),
    (["model.params.deepth=3"], "--set model.params.deepth=3: model: model 'msd' has no parameter(s) deepth"),
    (["splits.k=3", "train.lr=0"], "--set train.lr=0: train.lr = 0: must be > 0 or 'auto'"),
    (["epochs"], "--set epochs: expected section.key=value (e.g. train.epochs=5), got no '='"),
    (["=3"], "--set =3: expected section.key=value (e.g. train.epochs=5), got an empty key"),
    (["train..x=1"], "--set train..x=1: expected section.key=value (e.g. train.epochs=5), got an empty part"),
    (["train.lr=[1"], "--set train.lr=[1: the value is neither JSON nor YAML"),
    (["train.epochs.x=1"], "--set train.epochs.x=1: 'epochs' is not a configuration section"),
])
def test_a_refused_set_item_is_named(sets, expected):
    with pytest.raises(ConfigError) as exc:
        apply_sets(RunConfig(), sets)
    assert one_sentence(exc.value).startswith(expected)


def test_refusals_from_several_set_items_name_each_item():
    with pytest.raises(ConfigError) as exc:
        apply_sets(RunConfig(), ["recon.algorithm=art", "splits.k=3", "train.epochz=3"])
    text = one_sentence(exc.value)
    assert text.startswith("2 settings are refused: (1) --set recon.algorithm=art: recon.algorithm = 'art'")
    assert "(2) --set train.epochz=3: train.epochz = 3" in text and "splits.k=3" not in text


def test_set_syntax_errors_of_parse_sets_are_config_errors():
    for bad, expected in ((["epochs"], "got no '='"), (["train=5", "train.epochs=3"], "was already given a value")):
        with pytest.raises(ConfigError, match=expected):
            parse_sets(bad)


def test_overrides_are_named_as_such():
    with pytest.raises(ConfigError) as exc:
        RunConfig().with_overrides({"train": {"batch_size": 0}})
    assert one_sentence(exc.value) == "the overrides: train.batch_size = 0: must be >= 1 or 'auto'"
    with pytest.raises(ConfigError, match="the overrides must be a mapping of sections, got list"):
        RunConfig().with_overrides([1])
    with pytest.raises(ConfigError, match="^the overrides: trian = "):
        demo_config(trian={"epochs": 5})
    assert isinstance(exc.value, ValueError) and exc.value.__cause__ is not None  # pydantic's error, for the log


def test_one_sentence_for_errors_not_made_config_errors():
    import yaml
    from pydantic import ValidationError

    from tomodenoise.config import TrainConfig
    from tomodenoise.config_errors import one_sentence

    with pytest.raises(ValidationError) as exc:
        TrainConfig(strategy="2:2")
    assert one_sentence(exc.value) == "TrainConfig refused strategy = '2:2': input should be 'X:1' or '1:X'"
    with pytest.raises(yaml.YAMLError) as yexc:
        yaml.safe_load("a: [1\n")
    assert one_sentence(yexc.value).startswith("a YAML text line 2, column 1: expected ',' or ']'")
    assert one_sentence(OSError("as is")) == "as is"
