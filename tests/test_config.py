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


@pytest.mark.parametrize("key,value", [("inner_lr", ".nan"), ("gamma", ".nan"),
                                       ("max_kl", ".inf"), ("cg_damping", "-.inf")])
def test_non_finite_numbers_are_refused(key, value):
    with pytest.raises(ConfigError, match=f"--set: config key '{key}': must be a finite number"):
        load_config(data={"kind": "rl"}, overrides=[f"{key}={value}"])


def test_a_key_given_twice_in_a_file_is_refused(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("kind: rl\niterations: 3\niterations: 5\n")
    with pytest.raises(ConfigError, match=r"key 'iterations' given twice \(lines 2 and 3\)"):
        load_config(path)


def test_errors_of_overrides_name_the_override_not_the_file(tmp_path):
    path = tmp_path / "nav.yaml"
    path.write_text("kind: rl\n")
    with pytest.raises(ConfigError, match=r"^--set: unknown config key 'iteratons' \(did you "):
        load_config(path, ["iteratons=3"])
    with pytest.raises(ConfigError, match=r"^--set: config key 'iterations': expected an int"):
        load_config(path, ["iterations=many"])
    path.write_text("kind: rl\niteratons: 3\n")
    with pytest.raises(ConfigError, match=rf"^{path}: unknown config key 'iteratons'"):
        load_config(path)


def test_exponent_numbers_without_a_dot_are_floats(tmp_path):
    """YAML 1.1 reads 1e-5 as a string; a float key takes it as the number users mean."""
    config = load_config(data={"kind": "rl"}, overrides=["cg_damping=1e-5", "max_kl=2E-2"])
    assert config.cg_damping == 1e-5 and config.max_kl == 0.02
    (tmp_path / "c.yaml").write_text("kind: sinusoid\ninner_lr: 5e-3\n")
    assert load_config(tmp_path / "c.yaml").inner_lr == 0.005
    with pytest.raises(ConfigError, match="inner_steps.*expected an integer"):
        load_config(data={"kind": "sinusoid"}, overrides=["inner_steps=1e3"])
    with pytest.raises(ConfigError, match="method"):
        load_config(data={"kind": "sinusoid"}, overrides=["method=1e3"])
