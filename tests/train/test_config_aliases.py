"""TRL's config names are accepted where they mean what unift's do (docs/trl.md): each moves to
unift's key, values mapped where TRL spells them differently; an alias beside its unift key is
an error naming both; TRL's `beta` on a task source is the KL weight params.c_kl, not the
diagnostics' scale; and a config with aliases resolves to the same config.yaml (so resume and
`unift compare` see the same run)."""

import pytest

from unift.config import (
    TRL_ALIASES,
    ConfigError,
    RunConfig,
    SourceConfig,
    build_config,
    dump_config,
    load_config,
    to_dict,
)

TASK = {"kind": "task", "task": "countdown", "objective": "grpo"}
PREF = {"kind": "preference", "path": "pairs.jsonl", "objective": "dpo"}


def get(config, key: str):
    node = config
    for part in key.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


RUN_CASES = [  # (TRL name, value, unift key, expected)
    ("learning_rate", 3e-6, "optim.lr", 3e-6),
    ("max_steps", 17, "steps", 17),
    ("gradient_accumulation_steps", 4, "optim.grad_accum", 4),
    ("warmup_steps", 3, "optim.warmup_steps", 3),
    ("weight_decay", 0.01, "optim.weight_decay", 0.01),
    ("max_grad_norm", 0.5, "optim.grad_clip", 0.5),
    ("lr_scheduler_type", "constant_with_warmup", "optim.schedule", "constant"),
    ("lr_scheduler_type", "linear", "optim.schedule", "linear"),
    ("save_steps", 5, "save_every", 5),
    ("bf16", True, "precision", "bf16"),
    ("bf16", False, "precision", "fp32"),
]


@pytest.mark.parametrize(("name", "value", "key", "expected"), RUN_CASES)
def test_a_trl_training_argument_sets_the_unift_key(name, value, key, expected):
    config = build_config({name: value, "sources": [TASK]})
    assert get(config, key) == expected


SOURCE_CASES = [
    ("num_generations", 8, "rollout.num_generations", 8),
    ("max_completion_length", 256, "rollout.max_new_tokens", 256),
    ("temperature", 0.7, "rollout.temperature", 0.7),
    ("top_p", 0.9, "rollout.top_p", 0.9),
    ("num_iterations", 2, "rollout.ppo_epochs", 2),
    ("scale_rewards", False, "rollout.scale_rewards", "none"),  # TRL's old boolean form
    ("scale_rewards", True, "rollout.scale_rewards", "group"),
    ("scale_rewards", "batch", "rollout.scale_rewards", "batch"),
    ("epsilon_high", 0.28, "params.epsilon_high", 0.28),
    ("loss_type", "grpo", "params.aggregation", "sequence_mean"),
    ("loss_type", "dapo", "params.aggregation", "token_mean"),
    ("loss_type", "dr_grpo", "params.aggregation", "constant"),
]


@pytest.mark.parametrize(("name", "value", "key", "expected"), SOURCE_CASES)
def test_a_trl_grpo_setting_on_a_task_source_sets_the_unift_key(name, value, key, expected):
    source = build_config({"sources": [{**TASK, name: value}]}).sources[0]
    assert get(source, key) == expected


def test_epsilon_sets_both_clip_bounds_unless_epsilon_high_is_given():
    """TRL: epsilon_high defaults to epsilon."""
    one = build_config({"sources": [{**TASK, "epsilon": 0.3}]}).sources[0].params
    assert (one["epsilon_low"], one["epsilon_high"]) == (0.3, 0.3)
    two = build_config({"sources": [{**TASK, "epsilon": 0.2, "epsilon_high": 0.28}]}).sources[0].params
    assert (two["epsilon_low"], two["epsilon_high"]) == (0.2, 0.28)
    three = build_config({"sources": [{**TASK, "epsilon": 0.2, "params": {"epsilon_high": 0.28}}]}).sources[0].params
    assert (three["epsilon_low"], three["epsilon_high"]) == (0.2, 0.28)


def test_overrides_take_trl_names_too():
    config = build_config({"sources": [TASK]}, ["learning_rate=2e-6", "sources.0.num_generations=6"])
    assert (config.optim.lr, config.sources[0].rollout.num_generations) == (2e-6, 6)


def _unift_key_given(section: str, alias) -> dict:
    """A config giving `alias`'s unift key (nested) beside it."""
    data: dict = {}
    node = data
    *parents, last = alias.key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = "whatever"
    return data


@pytest.mark.parametrize(("section", "name"), [(s, n) for s, table in TRL_ALIASES.items() for n in table])
def test_an_alias_beside_its_unift_key_is_an_error_naming_both(section, name):
    alias = TRL_ALIASES[section][name]
    value = next(iter(alias.values)) if alias.values else 1
    if section == "run":
        data = {**_unift_key_given(section, alias), name: value, "sources": [TASK]}
    else:
        data = {"sources": [{**TASK, **_unift_key_given(section, alias), name: value}]}
    with pytest.raises(ConfigError) as err:
        build_config(data)
    assert f"{name} and {alias.key} are both given" in str(err.value)


def test_a_grpo_setting_on_a_record_source_is_refused():
    with pytest.raises(ConfigError, match=r"sources\.0\.num_generations: TRL's num_generations .* applies to task "
                                          r"sources, not to a preference source"):
        build_config({"sources": [{**PREF, "num_generations": 4}]})


@pytest.mark.parametrize(("data", "needle"), [
    ({"sources": [{**TASK, "loss_type": "bnpo"}]}, "sources.0.loss_type: 'bnpo' has no unift equivalent; accepted: "
                                                  "grpo, dapo, dr_grpo"),
    ({"lr_scheduler_type": "cosine_with_restarts", "sources": [TASK]}, "lr_scheduler_type: 'cosine_with_restarts' "
                                                                       "has no unift equivalent"),
    ({"learning_rate": "fast", "sources": [TASK]}, "optim.lr: expected a number, got 'fast' (given as learning_rate)"),
    ({"num_generations": 8, "sources": [TASK]}, "num_generations: a task source's setting (sources.N.num_generations"),
    ({"per_device_train_batch_size": 8, "sources": [TASK]}, "TRL's per_device_train_batch_size counts completions"),
])
def test_bad_trl_names_and_values_say_what_to_write(data, needle):
    with pytest.raises(ConfigError) as err:
        build_config(data)
    assert needle in str(err.value)


def test_warmup_ratio_is_converted_as_transformers_does():
    """ceil(0.1 x 15) = 2 warm-up steps; with TRL's max_steps and unift's steps alike."""
    assert build_config({"warmup_ratio": 0.1, "max_steps": 15, "sources": [TASK]}).optim.warmup_steps == 2
    assert build_config({"warmup_ratio": 0.1, "steps": 20, "sources": [TASK]}).optim.warmup_steps == 2
    assert build_config({"warmup_ratio": 0.25, "sources": [TASK]}).optim.warmup_steps == 3  # default steps 10
    # transformers 5 dropped warmup_ratio: a warmup_steps below 1 is the ratio
    assert build_config({"warmup_steps": 0.1, "max_steps": 15, "sources": [TASK]}).optim.warmup_steps == 2
    assert build_config({"warmup_steps": 3, "max_steps": 15, "sources": [TASK]}).optim.warmup_steps == 3
    with pytest.raises(ConfigError, match="warmup_ratio and optim.warmup_steps are both given"):
        build_config({"warmup_ratio": 0.1, "optim": {"warmup_steps": 1}, "sources": [TASK]})


# -- TRL's beta on a task source -------------------------------------------------------------


def test_beta_on_a_task_source_is_the_kl_weight():
    """TRL's GRPO `beta: 0.04` weighs the KL term; in unift that is params.c_kl (the source's
    beta scales only the implicit-reward diagnostics), and it wins over the preset's 0.001."""
    source = build_config({"sources": [{**TASK, "preset": "uft", "beta": 0.04}]}).sources[0]
    assert source.params["c_kl"] == 0.04
    assert source.params["c_nll"] == 0.001  # the rest of the preset still applies
    assert source.beta == SourceConfig.beta
    assert SourceConfig(**TASK, beta=0.0).params["c_kl"] == 0.0  # from Python too; 0 turns the KL off


def test_beta_and_c_kl_on_a_task_source_is_an_error_naming_both():
    with pytest.raises(ConfigError, match=r"sources\.0\.beta: on a task source TRL's beta is params\.c_kl .* "
                                          r"params\.c_kl is given too"):
        build_config({"sources": [{**TASK, "beta": 0.04, "params": {"c_kl": 0.01}}]})


def test_beta_on_a_preference_source_stays_dpos_beta():
    source = build_config({"sources": [{**PREF, "beta": 0.3}]}).sources[0]
    assert (source.beta, source.params) == (0.3, {})


def test_a_config_with_trl_names_loads_back_from_its_config_yaml(tmp_path):
    """config.yaml holds unift's keys only: loaded again it is the same run (resume and
    `unift compare` compare them)."""
    config = build_config({"learning_rate": 1e-6, "max_steps": 12, "warmup_ratio": 0.1, "bf16": False,
                           "sources": [{**TASK, "preset": "rft", "beta": 0.04, "num_generations": 8,
                                        "max_completion_length": 64, "epsilon": 0.25, "loss_type": "dr_grpo"}]})
    dump_config(config, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert to_dict(again) == to_dict(config)
    assert isinstance(again, RunConfig) and again.sources[0].params["c_kl"] == 0.04
