"""Every shipped config loads, names a known family, and keeps the paper's settings."""

from pathlib import Path

import pytest

from metarl.cli import make_family
from metarl.config import load_config

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "experiments" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_is_valid(path):
    config = load_config(path)
    if config.kind == "rl":
        assert make_family(config).name == config.env
        assert (config.inner_lr, config.max_kl, config.hidden_sizes) == (0.1, 0.01, [100, 100])
        assert config.iterations == 500


def test_all_published_settings_are_shipped():
    names = {p.stem for p in CONFIGS}
    assert {"sinusoid", "navigation-2d", "halfcheetah-vel", "halfcheetah-dir", "ant-vel",
            "ant-dir", "ant-goal"} <= names
