"""Strict configs: one-line errors naming the key and what is allowed."""

import pytest

from metarl.config import ConfigError, load_config

BASE = {"kind": "sinusoid"}


def make(**over):
    return load_config(data={**BASE, **over})


def test_defaults_are_the_papers_settings():
    config = make()
    settings = (config.meta_batch_size, config.shots, config.inner_lr, config.outer_lr)
    assert settings == (25, 10, 0.01, 0.001)
    assert config.hidden_sizes == [40, 40] and config.iterations == 70000


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"key 'inner_lrr' \(did you mean 'inner_lr'"):
        make(inner_lrr=0.1)


@pytest.mark.parametrize("key,value,message", [
    ("inner_lr", "fast", "'inner_lr': expected a number, got 'fast'"),
    ("iterations", 1.5, "'iterations': expected an integer"),
    ("iterations", 0, "'iterations': must be >= 1"),
    ("inner_lr", 0.0, "'inner_lr': must be > 0"),
    ("method", "mamll", "'method': expected one of 'maml', 'fomaml'"),
    ("hidden_sizes", [40, "x"], r"'hidden_sizes\[1\]': expected an integer"),
    ("amplitude_range", [5.0, 0.1], "'amplitude_range': expected \\[low, high\\]"),
    ("seed", True, "'seed': expected an integer, got True"),
])
def test_bad_values_are_one_line_errors(key, value, message):
    with pytest.raises(ConfigError, match=message) as info:
        make(**{key: value})
    assert "\n" not in str(info.value)


def test_unknown_kind():
    with pytest.raises(ConfigError, match="'kind' must be one of 'sinusoid', 'rl'"):
        load_config(data={"kind": "sinewave"})


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("kind: sinusoid\ninner_lr: 0.05\n")
    config = load_config(path, ["iterations=7", "hidden_sizes=[8, 8]", "method=fomaml"])
    assert (config.inner_lr, config.iterations, config.hidden_sizes, config.method) == (
        0.05, 7, [8, 8], "fomaml")
    with pytest.raises(ConfigError, match="--set expects key=value"):
        load_config(path, ["iterations"])


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [sinusoid\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
