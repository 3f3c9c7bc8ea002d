from pathlib import Path

import pytest

from unift.config import ConfigError, RunConfig, load_config
from unift.train import losses

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_builds(path):
    config = load_config(path)
    assert isinstance(config, RunConfig)
    for s in config.sources:
        if s.kind != "task":
            losses.get(s.objective, s.kind)
            assert (path.parent / s.path).exists() or Path(s.path).exists(), s.path


def test_overrides_are_typed_and_dotted():
    config = load_config(None, ["steps=7", "optim.lr=3e-5", "sources.0.weight=0.25", "sources.0.path=x.jsonl",
                                "model.lora.r=8"])
    assert config.steps == 7 and config.optim.lr == 3e-5
    assert config.sources[0].weight == 0.25 and config.model.lora.r == 8


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="unknown field"):
        load_config(None, ["optim.learning_rate=1"])


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match="steps: expected int"):
        load_config(None, ["steps=many"])
