"""`unift compare`'s protocols, per-arm settings, seeds and stop strings: hand-computed pieces
(the steps split of a sequence, --set parsing, the run configs of each protocol), and one small
step-matched comparison with two seeds on the tiny model."""

import json

import pytest

from tests.train.helpers import tiny_compare
from unift import compare, tasks
from unift.compare import (
    QUICKSTART,
    arm_settings,
    arms_for,
    build_parser,
    parse_overrides,
    run_name,
    settings_for,
    settings_from_args,
    split_steps,
)
from unift.compare.cli import quickstart_base
from unift.compare.runs import stage_steps
from unift.config import load_config, to_dict
from unift.report import manifest_settings
from unift.train.flops import ModelFlops
from unift.train.metrics import read_metrics


def test_a_sequence_splits_the_steps_by_share():
    assert split_steps(12, [0.5, 0.5]) == [6, 6]
    assert split_steps(5, [0.5, 0.5]) == [3, 2]  # 2.5 each: the tie goes to the first stage
    assert split_steps(10, [0.25, 0.75]) == [3, 7]  # 2.5 + 7.5
    assert split_steps(3, [0.1, 0.9]) == [1, 2]  # 0.3 rounds to 0: at least one step each
    assert split_steps(7, [1.0]) == [7]
    with pytest.raises(ValueError, match="cannot give each of 2 stages"):
        split_steps(1, [0.5, 0.5])
    sft_rft, uft = arms_for(["sft-rft", "uft"])
    s = settings_for("countdown", match="steps", steps=9)
    assert stage_steps(s, sft_rft.stages) == [5, 4] and stage_steps(s, uft.stages) == [9]
    assert stage_steps(settings_for("countdown"), sft_rft.stages) == [0, 0]  # flops: estimated


def test_per_arm_set_items():
    o = parse_overrides(["lr=1e-5", "uft.lr=5e-5", "rft.schedule=constant", "uft.sources.0.params.c_nll=1.0",
                         "optim.warmup_steps=2", "diagnostics_every=5", "sft-rft.steps=4", "seed=3"])
    # short names become their RunConfig keys; YAML's "1e-5" is read as a number; seed -> seeds
    assert o.values == {"optim.lr": 1e-5, "optim.warmup_steps": 2, "diagnostics_every": 5, "seeds": [3]}
    assert o.arms["uft"].values == {"optim.lr": 5e-5, "sources.0.params.c_nll": 1.0}
    assert o.arms["rft"].values == {"optim.schedule": "constant"} and o.arms["sft-rft"].values == {"steps": 4}
    assert o.arms["uft"].items == ["uft.lr=5e-5", "uft.sources.0.params.c_nll=1.0"]
    # every arm gets the shared values; an arm's own fields and run keys go to it alone
    s = settings_for("countdown", **o.values)
    per_arm = arm_settings(s, o, arms_for(["sft", "rft", "uft", "sft-rft"]))
    assert per_arm["sft-rft"].steps == 4 and per_arm["uft"].steps == 0
    assert [per_arm[a].run["optim.lr"] for a in ("sft", "rft", "uft")] == [1e-5, 1e-5, 5e-5]
    assert [per_arm[a].run["optim.schedule"] for a in ("sft", "rft", "uft")] == ["cosine", "constant", "cosine"]
    assert per_arm["uft"].run["sources.0.params.c_nll"] == 1.0 and "sources.0.params.c_nll" not in per_arm["sft"].run
    assert all(per_arm[a].run["optim.warmup_steps"] == 2 and per_arm[a].run["diagnostics_every"] == 5
               for a in ("sft", "uft"))
    # an arm that is not in the comparison, and settings every arm must share, are refused
    with pytest.raises(ValueError, match="'sft-rft' is neither an arm"):
        arm_settings(s, o, arms_for(["sft", "rft", "uft"]))
    with pytest.raises(ValueError, match="eval_n is shared by every arm"):
        parse_overrides(["uft.eval_n=16"])
    with pytest.raises(ValueError, match="eval.n is shared by every arm"):
        parse_overrides(["uft.eval.n=16"])
    with pytest.raises(ValueError, match="expected key=value"):
        parse_overrides(["uft.lr"])


def test_flags_protocols_and_seeds():
    args = build_parser().parse_args(["--match", "steps", "--steps", "20", "--seeds", "0,1,2", "--set", "uft.lr=1e-4"])
    s, o = settings_from_args(args)
    assert (s.match, s.steps, s.seeds) == ("steps", 20, [0, 1, 2]) and o.arms["uft"].values == {"optim.lr": 1e-4}
    with pytest.raises(ValueError, match="--steps N"):
        settings_from_args(build_parser().parse_args(["--match", "steps"]))
    with pytest.raises(ValueError, match="repeats a seed"):
        settings_from_args(build_parser().parse_args(["--seeds", "1,1"]))
    assert compare.main(["--match", "steps", "--algos", "sft"]) == 2  # no model loads before the error
    s = settings_for("countdown")
    assert (s.match, s.steps, s.seeds, s.value("eval_n"), s.value("stop_strings")) == ("flops", 0, [0], 128,
                                                                                      ["</answer>"])
    # the quickstart is step-matched; --match flops gives it its budget back
    quick = settings_for(**QUICKSTART)
    assert (quick.match, quick.steps, quick.value("eval_n")) == ("steps", 6, 64)
    flops = settings_for(**quickstart_base(build_parser().parse_args(["--match", "flops"])))
    assert (flops.match, flops.steps, flops.budget) == ("flops", 0, 2e13)
    text = build_parser().format_help()
    assert all(x in text for x in ("--match {steps,flops}", "--steps", "--seeds", "uft.lr=5e-5", "hold-cosine"))
    # the short names with their defaults, RunConfig keys and the RunConfig fields' docs
    assert all(x in text for x in ("eval_n=128", "lr=2e-05", "optim.lr: Peak learning rate (AdamW).",
                                   "max_new_tokens=96 (general_points 160",
                                   "sources.0.rollout.max_new_tokens, and eval"))
    assert "eval_n=64" in build_parser("unift quickstart", quick).format_help()


def test_stop_strings_default_to_the_tasks_own():
    own = list(getattr(tasks.get("countdown", variant="easy"), "stop_strings", ()))
    stops = ("sources.0.rollout.stop_strings", "eval.stop_strings")
    assert [settings_for("countdown").run[k] for k in stops] == [own, own]
    assert [settings_for("countdown", stop_strings=[]).run[k] for k in stops] == [[], []]
    assert [settings_for("countdown", stop_strings=["\n\n"]).run[k] for k in stops] == [["\n\n"], ["\n\n"]]
    # a dotted key sets that place only
    assert [settings_for("countdown", **{"eval.stop_strings": []}).run[k] for k in stops] == [own, []]


def _build(tmp_path, s, preset="rft", **kw):
    return compare.build_run_config(s, compare.Stage(preset), "tiny", tmp_path / "run", tmp_path / f"{preset}.yaml",
                                    ModelFlops(1000, 100), compare.TokenLengths(120, 50), **kw)[0]


def test_run_configs_of_each_protocol(tmp_path):
    # steps: the given steps, no FLOP limit, evaluations every steps / evals steps
    s = settings_for("countdown", match="steps", steps=10, evals=4, stop_strings=["</answer>"])
    config = _build(tmp_path, s, seed=2, steps=10)
    assert (config.steps, config.max_flops, config.seed) == (10, 0.0, 2)
    assert (config.eval.every_steps, config.eval.every_flops) == (3, 0.0)
    assert config.sources[0].rollout.stop_strings == ["</answer>"] and config.eval.stop_strings == ["</answer>"]
    # flops: the budget x share, steps estimated from it, evaluations every budget / evals FLOPs
    s = settings_for("countdown", budget=1e12, evals=4)
    config = _build(tmp_path, s)
    per_step = compare.flops_per_step(config, ModelFlops(1000, 100), compare.TokenLengths(120, 50), s.rollout_fill)
    assert config.max_flops == 1e12 and config.steps == compare.estimate_steps(1e12, per_step)
    assert config.max_flops_fill  # the estimate sets the schedules; the budget where the run stops
    assert (config.eval.every_steps, config.eval.every_flops) == (0, 2.5e11)
    # flops with fixed steps: the steps as given, the budget still the limit
    config = _build(tmp_path, settings_for("countdown", budget=1e12, steps=7), steps=7)
    assert (config.steps, config.max_flops, config.max_flops_fill) == (7, 1e12, False)
    # the hold-cosine LR schedule passes through to the trainer's config
    assert _build(tmp_path, settings_for("countdown", schedule="hold-cosine"), "uft").optim.schedule == "hold-cosine"


def _arm_configs(tmp_path, items: list[str], algos=("rft", "uft")) -> dict:
    """The run config of each arm of a step-matched comparison with these --set items."""
    args = build_parser().parse_args(["--match", "steps", "--steps", "4", "--algos", ",".join(algos)]
                                     + [x for item in items for x in ("--set", item)])
    s, o = settings_from_args(args)
    runs = compare.plan(s, arms_for(s.algos), tmp_path, o)
    return {r.name: to_dict(compare.build_run_config(r.settings, r.stage, r.init, tmp_path / r.dir,
                                                     tmp_path / f"{r.name}.yaml", ModelFlops(1000, 100),
                                                     compare.TokenLengths(120, 50), seed=r.seed, steps=r.steps)[0])
            for r in runs}


@pytest.mark.parametrize("short, dotted", [
    (["lr=1e-5"], ["optim.lr=1e-5"]),
    (["batch_size=3"], ["sources.0.batch_size=3"]),
    (["rft.schedule=constant"], ["rft.optim.schedule=constant"]),
    (["eval_split=val", "eval_n=16"], ["eval.split=val", "eval.n=16"]),
    # one short name, two places: the rollouts' length and, unless set, the evaluation's
    (["max_new_tokens=50"], ["sources.0.rollout.max_new_tokens=50", "eval.max_new_tokens=50"]),
    (["max_new_tokens=50", "eval_max_new_tokens=70"],
     ["sources.0.rollout.max_new_tokens=50", "eval.max_new_tokens=70"]),
    (["eval_max_new_tokens=70", "max_new_tokens=50"],
     ["eval.max_new_tokens=70", "sources.0.rollout.max_new_tokens=50"]),
    (["stop_strings=[]"], ["sources.0.rollout.stop_strings=[]", "eval.stop_strings=[]"]),
])
def test_a_short_name_and_its_runconfig_keys_give_the_same_run_configs(tmp_path, short, dotted):
    configs = _arm_configs(tmp_path, short)
    assert configs == _arm_configs(tmp_path, dotted)
    assert configs != _arm_configs(tmp_path, [])  # the items do change the configs


def test_max_new_tokens_by_its_runconfig_key_sets_the_rollouts_only(tmp_path):
    config = _arm_configs(tmp_path, ["sources.0.rollout.max_new_tokens=50"])["rft"]
    assert (config["sources"][0]["rollout"]["max_new_tokens"], config["eval"]["max_new_tokens"]) == (50, 96)
    config = _arm_configs(tmp_path, ["max_new_tokens=50"])["rft"]
    assert (config["sources"][0]["rollout"]["max_new_tokens"], config["eval"]["max_new_tokens"]) == (50, 50)


@pytest.mark.parametrize("item, message", [
    ("lrr=1e-5", "did you mean lr"),
    ("batchsize=4", "did you mean batch_size"),
    ("eval_nn=4", "did you mean eval_n"),
    ("optim.warmup_step=2", "optim has no field 'warmup_step'; did you mean warmup_steps"),
    ("sources.0.rollout.temprature=0.5", "did you mean temperature"),
    ("uft.lrr=1e-5", "did you mean lr"),
])
def test_an_unknown_set_key_is_refused_with_the_closest_names(item, message):
    with pytest.raises(ValueError, match=message):
        parse_overrides([item])


def test_an_unknown_arm_is_refused_with_the_closest_names(capsys):
    o = parse_overrides(["ufft.lr=1e-5"])
    with pytest.raises(ValueError, match="'ufft' is neither an arm.*did you mean uft"):
        arm_settings(settings_for("countdown"), o, arms_for(["rft", "uft"]))
    assert compare.main(["--algos", "rft,uft", "--set", "optim.warmup_step=2"]) == 2  # before any model loads
    assert "did you mean warmup_steps" in capsys.readouterr().err


def test_run_names_with_seeds():
    sft_rft, uft = arms_for(["sft-rft", "uft"])
    assert run_name("uft", uft.stages, 0, 0, [0]) == "uft"
    assert run_name("uft", uft.stages, 0, 1, [0, 1]) == "uft-s1"
    assert run_name("sft-rft", sft_rft.stages, 1, 0, [7]) == "sft-rft_2_rft"
    assert run_name("sft-rft", sft_rft.stages, 1, 2, [0, 2]) == "sft-rft_2_rft-s2"


TINY = tiny_compare(evals=1)


def test_step_matched_comparison_with_two_seeds_on_tiny(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["--algos", "sft-rft,uft", "--match", "steps", "--steps", "3", "--seeds", "0,1", "--out", str(out),
            "--set", "uft.lr=5e-3", "--set", "uft.sources.0.params.c_nll=0.5", *TINY]
    assert compare.main(argv) == 0
    manifest = json.loads((out / "compare.json").read_text())
    assert (manifest["match"], manifest["steps"], manifest["budget"], manifest["seeds"]) == ("steps", 3, None, [0, 1])
    uft = manifest["arms"][1]
    assert uft["set"] == ["uft.lr=5e-3", "uft.sources.0.params.c_nll=0.5"]
    assert [[r["dir"] for r in x["runs"]] for x in manifest["arms"][0]["seeds"]] == [
        ["runs/sft-rft_1_sft-s0", "runs/sft-rft_2_rft-s0"], ["runs/sft-rft_1_sft-s1", "runs/sft-rft_2_rft-s1"]]
    for seed in (0, 1):
        # sft-rft: 3 steps split 2 + 1; the second stage starts from the first one's model
        first = load_config(out / "configs" / f"sft-rft_1_sft-s{seed}.yaml")
        second = load_config(out / "configs" / f"sft-rft_2_rft-s{seed}.yaml")
        assert (first.steps, second.steps, first.max_flops, second.max_flops) == (2, 1, 0.0, 0.0)
        assert second.model.name == str(out / "runs" / f"sft-rft_1_sft-s{seed}") and first.seed == seed
        assert len(read_metrics(out / "runs" / f"sft-rft_2_rft-s{seed}")) == 1
        # uft: its own LR and NLL weight, every step trained
        config = load_config(out / "configs" / f"uft-s{seed}.yaml")
        assert (config.steps, config.optim.lr, config.sources[0].params["c_nll"]) == (3, 5e-3, 0.5)
        assert config.seed == seed and len(read_metrics(out / "runs" / f"uft-s{seed}")) == 3
    assert load_config(out / "configs" / "sft-rft_2_rft-s0.yaml").optim.lr == 1e-3
    # every rollout and evaluation, the base model's too, stops at the task's stop strings
    own = list(getattr(tasks.get("countdown", variant="easy"), "stop_strings", ()))
    assert config.sources[0].rollout.stop_strings == config.eval.stop_strings == own
    assert json.loads((out / "base" / "key.json").read_text())["stop_strings"] == own
    assert manifest["settings"]["run"]["eval.stop_strings"] == own == manifest_settings(manifest)["stop_strings"]
    page = (out / "report.html").read_text()
    assert "<b>Protocol:</b> step-matched: every arm 3 optimiser steps of 2 prompts" in page
    assert "uft: uft.lr=5e-3, uft.sources.0.params.c_nll=0.5" in page
    assert "RL steps of 2 prompts x 2 rollouts" in page  # the report reads the run values of the manifest
    printed = capsys.readouterr().out
    assert "Protocol: step-matched" in printed and "| uft | 3 |" in printed
    # a second call finds all six runs trained
    assert compare.main(argv) == 0
    assert capsys.readouterr().out.count("already trained") == 6
    # another uft LR retrains uft over its old runs (the trainer refuses a used directory unless told)
    argv[argv.index("uft.lr=5e-3")] = "uft.lr=4e-3"
    assert compare.main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("already trained") == 4 and printed.count("done in") == 2
    assert load_config(out / "runs" / "uft-s1" / "config.yaml").optim.lr == 4e-3

