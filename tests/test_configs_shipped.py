"""Every shipped config loads, names a known family, and keeps the paper's settings."""

import importlib.util
from pathlib import Path

import pytest

from metarl.config import load_config
from metarl.rl.families import make_family

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "experiments" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_is_valid(path):
    config = load_config(path)
    if config.kind == "rl" and config.env.startswith("MetaWorld"):  # Meta-World+'s settings
        assert (config.inner_lr, config.max_kl, config.hidden_sizes) == (0.1, 0.01, [512, 512])
        assert config.horizon == 500 and config.episodes_per_task == 10
        # Building ML45 takes ~35 s: ML1 and ML10 are built, ML45 only loaded.
        if importlib.util.find_spec("metaworld") is not None and config.env != "MetaWorldML45":
            assert make_family(config).name == config.env
    elif config.kind == "rl":
        assert make_family(config).name == config.env
        assert (config.inner_lr, config.max_kl, config.hidden_sizes) == (0.1, 0.01, [100, 100])
        assert config.iterations == 500


def test_all_published_settings_are_shipped():
    names = {p.stem for p in CONFIGS}
    assert {"sinusoid", "navigation-2d", "halfcheetah-vel", "halfcheetah-dir", "ant-vel",
            "ant-dir", "ant-goal"} <= names
