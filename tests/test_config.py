from pathlib import Path

import pytest

from lifelong.config import (
    ConfigError,
    RunConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    load_config_file,
    parse_seeds,
    validate,
)


def test_defaults_are_valid_and_follow_the_gem_protocol():
    config = validate(RunConfig())
    assert config.train.epochs == 1
    assert config.train.batch_size == 10
    assert config.train.lr == 0.1
    assert config.train.hidden == (100, 100)


@pytest.mark.parametrize(
    ("train", "message"),
    [
        (TrainConfig(epochs=0), "--epochs"),
        (TrainConfig(batch_size=0), "--batch-size"),
        (TrainConfig(lr=-1.0), "--lr"),
        (TrainConfig(lr=float("nan")), "--lr"),
        (TrainConfig(memory_size=-1), "--memory-size"),
    ],
)
def test_invalid_training_numbers_name_the_flag(train, message):
    with pytest.raises(ConfigError, match=message):
        validate(RunConfig(train=train))


def test_invalid_run_settings_are_refused():
    with pytest.raises(ConfigError, match="--seeds lists a seed twice"):
        validate(RunConfig(seeds=(1, 1)))
    with pytest.raises(ConfigError, match="--agents needs"):
        validate(RunConfig(agents=()))
    with pytest.raises(ConfigError, match="--device"):
        validate(RunConfig(device="tpu"))


@pytest.mark.parametrize("text", ["x", "0,x", "-1", "1.5", ""])
def test_parse_seeds_refuses_non_integers(text):
    with pytest.raises(ConfigError, match="--seeds"):
        parse_seeds(text)


def test_parse_seeds_reads_lists_and_strings():
    assert parse_seeds("0, 1,2") == (0, 1, 2)
    assert parse_seeds([3, 4]) == (3, 4)
    assert parse_seeds(7) == (7,)


def test_dict_round_trip_keeps_every_value():
    config = RunConfig(agents=("naive", "gem"), seeds=(4,), train=TrainConfig(hidden=(50,)))
    assert config_from_dict(config_to_dict(config)) == config


def test_unknown_keys_list_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown train key.*valid keys: epochs"):
        config_from_dict({"train": {"epoch": 3}})
    with pytest.raises(ConfigError, match="unknown config key"):
        config_from_dict({"streams": {}})


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_config_files_in_yaml_and_toml(tmp_path: Path, suffix):
    text = {
        ".yaml": "agents: [naive, replay]\nseeds: [5]\ntrain:\n  memory_size: 64\n"
        "stream:\n  name: split-digits\n  options: {classes_per_task: 2}\n",
        ".toml": 'agents = ["naive", "replay"]\nseeds = [5]\n[train]\nmemory_size = 64\n'
        '[stream]\nname = "split-digits"\n[stream.options]\nclasses_per_task = 2\n',
    }[suffix]
    path = tmp_path / f"run{suffix}"
    path.write_text(text)
    config = load_config_file(path)
    assert config.agents == ("naive", "replay")
    assert config.seeds == (5,)
    assert config.train.memory_size == 64
    assert config.stream.options == {"classes_per_task": 2}


def test_bad_config_files_give_one_line(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.toml"
    broken.write_text("agents = [")
    with pytest.raises(ConfigError, match="is not valid"):
        load_config_file(broken)
    other = tmp_path / "run.ini"
    other.write_text("x")
    with pytest.raises(ConfigError, match=r"\.yaml, \.yml or \.toml"):
        load_config_file(other)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train:\n  lr: abc\n", r"train\.lr must be a number, got 'abc' \(str\)"),
        ("train:\n  lr: 1e-3\n", r"train\.lr must be a number.*write 1\.0e-3"),
        ("train:\n  epochs: 1.5\n", r"train\.epochs must be an integer, got 1\.5 \(float\)"),
        ("train:\n  hidden: [100, x]\n", r"train\.hidden must be a list of integers"),
        ("train:\n  memory_bytes: 2.5\n", r"memory_bytes must be an integer or null"),
        ("stream:\n  n_tasks: '5'\n", r"stream\.n_tasks must be an integer or null"),
        ("stream:\n  download: 1\n", r"stream\.download must be true or false, got 1"),
        ("workers: true\n", r"workers must be an integer or null, got True \(bool\)"),
        ("threads: 1.0\n", r"threads must be an integer"),
        ("device: 3\n", r"device must be a string, got 3"),
    ],
)
def test_wrong_types_in_a_file_give_one_line_naming_the_key(tmp_path: Path, text, message):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        validate(load_config_file(path))


def test_integers_are_numbers_and_none_where_allowed():
    config = config_from_dict({"train": {"lr": 1, "memory_bytes": None}, "workers": None})
    assert validate(config).train.lr == 1


def test_agent_entries_define_named_variants_with_their_settings():
    config = config_from_dict(
        {
            "agents": [
                "der",
                {"name": "der", "as": "der-a03", "alpha": 0.3},
                {"name": "lifelong", "retrieval": False},
            ],
            "agent_options": {"der": {"beta": 0.4}},
        }
    )
    assert config.agents == ("der", "der-a03", "lifelong")
    assert config.variants == {"der-a03": "der"}
    assert config.agent_options == {
        "der": {"beta": 0.4},
        "der-a03": {"alpha": 0.3},
        "lifelong": {"retrieval": False},
    }
    assert config.registered_agent("der-a03") == "der"
    assert config.registered_agent("der") == "der"
    assert validate(config) is config


def test_bad_agent_entries_give_one_line():
    with pytest.raises(ConfigError, match="a name or a mapping with a name"):
        config_from_dict({"agents": [{"as": "x"}]})
    with pytest.raises(ConfigError, match="'as' of agent 'der' must be a name"):
        config_from_dict({"agents": [{"name": "der", "as": 3}]})
    with pytest.raises(ConfigError, match="variant 'der-a03' of 'der' is defined but not compared"):
        validate(RunConfig(agents=("der",), variants={"der-a03": "der"}))
