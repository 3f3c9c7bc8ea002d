from pathlib import Path

import pytest

from unift.config import ConfigError, RunConfig, load_config
from unift.train import losses

_DIR = Path(__file__).resolve().parents[2] / "configs"
CONFIGS = sorted(p for p in _DIR.rglob("*.yaml") if p.parent != _DIR / "accelerate")  # run configs (not accelerate's)


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


def test_a_preset_set_from_python_trains_as_from_yaml(tmp_path):
    """SourceConfig(preset="uft") in Python is the same source as `preset: uft` in YAML (it used to
    train as RFT: presets were merged only into YAML dicts)."""
    from unift.config import SourceConfig

    raw = {"name": "countdown", "kind": "task", "task": "countdown", "objective": "grpo", "preset": "uft",
           "rollout": {"max_new_tokens": 64, "hint": {"T_hint": 0.5}}, "params": {"c_nll": 1.0}}
    (tmp_path / "run.yaml").write_text(__import__("yaml").safe_dump({"sources": [raw]}))
    from_yaml = load_config(tmp_path / "run.yaml").sources[0]
    from_python = SourceConfig(**raw)
    assert from_python == from_yaml
    # the preset filled in what the source left at its defaults; the source's own values won
    assert from_python.rollout.hint.schedule == "cosine" and from_python.rollout.hint.T_hint == 0.5
    assert from_python.params == {"c_kl": 0.001, "c_ent": 0.001, "c_nll": 1.0}
    assert SourceConfig(kind="task", preset="sft").rollout.policy_gradient is False
    with pytest.raises(ConfigError, match="unknown preset 'uftt'"):
        SourceConfig(kind="task", preset="uftt")


@pytest.mark.parametrize("objective,params,needle", [
    ("grpo", {"epsilon": 0.2}, "takes no param 'epsilon'; did you mean 'epsilon_low'?"),
    ("grpo", {"aggregation": "mean"}, "'mean' is not one of token_mean"),
    ("grpo", {"c_kl": "high"}, "c_kl: expected float"),
    ("una-pairwise", {"label_smoothing": 0.1}, "takes no param 'label_smoothing'"),
    ("dpo-hinge", {"label_smoothing": 0.1}, "takes no param 'label_smoothing'"),
    ("sft", {"reduction": "sum"}, "'sum' is not one of token_mean, sequence_sum"),
])
def test_bad_params_fail_before_the_model_loads(tmp_path, objective, params, needle):
    from unift.config import SourceConfig
    from unift.train.run import train

    kind = {"grpo": "task", "sft": "demonstration"}.get(objective, "preference")
    config = load_config(None, ["steps=1", f"output_dir={tmp_path / 'run'}", "model.name=/no/such/model"])
    config.sources = [SourceConfig(kind=kind, objective=objective, params=params, task="countdown",
                                   path="examples/data/preferences.jsonl")]
    with pytest.raises(ConfigError, match=f"sources.0.params.{next(iter(params))}") as err:
        train(config)  # the model path does not exist: the params are checked first
    assert needle in str(err.value)


def test_the_config_owns_its_types_and_library_code_takes_no_config():
    """The config's dataclasses (specs included) are defined in unift.config, which imports no
    library module to get them; outside the boundary (the run, compare and CLI code) no module
    imports a config dataclass, so library functions take plain values."""
    import ast
    import dataclasses
    import subprocess
    import sys

    from unift import config

    root = Path(config.__file__).parent
    loaded = subprocess.run([sys.executable, "-c", "import sys, unift.config; "
                             "print(' '.join(m for m in sys.modules if m.startswith('unift.')))"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert set(loaded) <= {"unift.config", "unift.data", "unift.data.records"}, loaded
    types = {name for name, value in vars(config).items() if dataclasses.is_dataclass(value)}
    assert {"RunConfig", "RolloutSpec", "HintSpec", "LoraSpec", "ExpertSpec", "GateSpec"} <= types
    boundary = {"config.py", "cli.py", "catalog.py", "train/run.py", "compare"}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        if rel in boundary or rel.split("/")[0] in boundary:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "unift.config":
                assert not {a.name for a in node.names} & types, f"{rel} imports {[a.name for a in node.names]}"
