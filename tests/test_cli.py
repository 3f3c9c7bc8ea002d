"""The `unift` command explains itself: --version, `unift list` read from the code's registries,
every --help with its defaults, argparse's exit code 2 for a missing argument, and one rule for
relative paths (output_dir from the working directory, data files there or next to the config)."""

import json
import re
from importlib.metadata import version

import pytest
import yaml

from tests.train.helpers import DATA
from unift import catalog, cli
from unift.config import LoraSpec, RunConfig
from unift.rollout import presets
from unift.tasks import TASKS
from unift.theory.simulate import SimConfig
from unift.train import losses


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `unift ARGV`, argparse's SystemExit included."""
    try:
        code = cli.main(argv)
    except SystemExit as stop:
        code = stop.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_version(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0
    assert out.strip() == f"unift {version('unift')}"
    assert run(["-V"], capsys)[1] == out


def test_unift_without_a_command_is_usage_on_stderr_and_exit_2(capsys):
    code, out, err = run([], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("usage: unift") and "list" in err


def test_train_without_a_config_is_usage_on_stderr_and_exit_2(capsys):
    code, out, err = run(["train"], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("usage: unift train CONFIG.yaml")
    assert "error: the following arguments are required: CONFIG.yaml" in err


def test_train_help_shows_the_defaults_of_run_config(capsys):
    code, out, _ = run(["train", "--help"], capsys)
    defaults = RunConfig()
    assert code == 0
    for line in (f"optim.lr = {defaults.optim.lr}", f"steps = {defaults.steps}", f"output_dir = {defaults.output_dir}",
                 f"model.lora.r = {LoraSpec().r}", f"precision = {defaults.precision}"):
        assert f"  {line}\n" in out, line
    assert "docs/trl.md" in out


@pytest.mark.parametrize("command", sorted(set(cli.COMMANDS) - {"train"}))
def test_every_help_exits_0_and_shows_defaults(command, capsys):
    code, out, _ = run([command, "--help"], capsys)
    assert code == 0, command
    assert out.startswith("usage: unift"), out[:200]
    assert "default" in out, f"`unift {command} --help` shows no default"


def test_theory_help_shows_each_default_of_its_simulation(capsys):
    out = run(["theory", "--help"], capsys)[1]
    d = SimConfig()
    for flag, value in (("eta", d.eta), ("beta", d.beta), ("groups", d.groups), ("group-size", d.group_size),
                        ("target", d.target), ("schedule", d.schedule), ("heights", "2..10")):
        assert re.search(rf"--{flag} .*?\(default: {re.escape(str(value))}\)", out, re.S), flag


def test_models_help_describes_the_action_and_the_spec(capsys):
    out = run(["models", "--help"], capsys)[1]
    assert "prepare: de-quantize or find the model" in out
    assert "(default: smollm2-135m-instruct)" in " ".join(out.split())


@pytest.mark.parametrize("argv", [["study", "--help"], ["study", "generalization", "--help"]])
def test_study_help_lists_the_real_options(argv, capsys):
    code, out, _ = run(argv, capsys)
    assert code == 0
    for option in ("--viter", "--warmup", "--init", "--budget", "--set"):
        assert option in out, option
    assert "(default 1e+15)" in " ".join(out.split())  # the study's budget, not compare's


def test_study_without_a_study_name_exits_2(capsys):
    code, out, err = run(["study"], capsys)
    assert (code, out) == (2, "")
    assert "unift study generalization" in err


# -- unift list ------------------------------------------------------------------------------


def test_list_objectives_names_every_registered_objective(capsys):
    code, out, _ = run(["list", "objectives"], capsys)
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()[1:] if line.strip() and not line.startswith("params")]
    assert set(names) == set(losses.OBJECTIVES)
    assert re.search(r"^sft\s+demonstration\s+no\s+Negative log-likelihood", out, re.M)
    assert re.search(r"^dpo\s+the same as dpo-sigmoid$", out, re.M)
    assert re.search(r"^dpo-ipo\s+preference\s+yes\s+.*\(loss_type ipo\)$", out, re.M)


def test_list_reads_objectives_and_presets_added_at_run_time(capsys, monkeypatch):
    """Nothing is copied into the listing: a new objective and preset (as a plugin or a
    helper adding `ppo` would register them) show up with their params and settings."""

    def _mine(x, p):
        """My objective: a test of the listing."""

    mine = losses.Objective(("demonstration",), True, _mine, params={"gamma_mine": 0.5},
                            choices={})
    monkeypatch.setitem(losses.OBJECTIVES, "mine", mine)
    monkeypatch.setitem(presets.PRESETS, "my-preset", {"params": {"c_kl": 0.25}, "rollout": {"temperature": 0.7}})
    assert re.search(r"^mine\s+demonstration\s+yes\s+My objective: a test of the listing\.$",
                     run(["list", "objectives"], capsys)[1], re.M)
    params = run(["list", "params", "mine"], capsys)[1]
    assert re.search(r"^gamma_mine\s+0\.5\s+float", params, re.M)
    listed = run(["list", "presets"], capsys)[1]
    assert "my-preset\n  (no description in unift.rollout.presets)\n  sets: params.c_kl=0.25 rollout.temperature=0.7" \
        in listed


def test_list_presets_shows_every_preset_with_its_description_and_settings(capsys):
    out = run(["list", "presets"], capsys)[1]
    described = catalog.preset_descriptions()
    for name, preset in presets.PRESETS.items():
        assert re.search(rf"^{re.escape(name)}$", out, re.M), name
        for key, value in catalog.flatten(preset):
            assert f"{key}={catalog.show(value)}" in out, (name, key)
    assert described["rft"] == "GRPO, never a hint."
    assert described["uft"].startswith("cosine-binomial hint schedule")
    assert "sft-rft" not in described  # "- sft-rft is two runs ..." names no preset


def test_list_params_shows_each_default_and_choice(capsys):
    out = run(["list", "params", "grpo"], capsys)[1]
    grpo = losses.OBJECTIVES["grpo"]
    for key, default in grpo.params.items():
        assert re.search(rf"^{key}\s+{re.escape(catalog.show(default))}\s", out, re.M), key
    assert re.search(r"^aggregation\s+token_mean\s+token_mean \| sequence_mean \| constant", out, re.M)
    assert "unift.objectives.policy_gradient.ufthint_loss:" in out  # the formula with c_kl, c_nll, c_ent
    assert re.search(r"^expert_gamma\s+0\.1\s+float\s+LUFFY's shaping", out, re.M)  # the comment in losses.py


def test_list_params_of_an_unknown_objective_is_one_line_exit_2(capsys):
    code, out, err = run(["list", "params", "grop"], capsys)
    assert (code, out) == (2, "")
    assert err.strip().startswith("unift list: error: unknown objective 'grop'; did you mean 'grpo'?")
    assert len(err.strip().splitlines()) == 1


def test_list_tasks_shows_every_task_its_variants_and_defaults(capsys):
    out = run(["list", "tasks"], capsys)[1]
    for name, cls in TASKS.items():
        assert re.search(rf"^{name}: \S", out, re.M), name
        for variant, v in cls.variants().items():
            assert re.search(rf"^  variant {variant}\s+{v['distribution'].upper()}\s+{re.escape(v['description'])}$",
                             out, re.M), (name, variant)
    assert "  defaults: min_numbers=3, max_numbers=4" in out  # countdown's, from Countdown.defaults


def test_list_config_shows_every_key_with_its_default_and_docstring(capsys):
    out = run(["list", "config"], capsys)[1]
    for key, _, _ in catalog.config_keys(RunConfig):
        assert re.search(rf"^{re.escape(key)}\s", out, re.M), key
    assert re.search(r"^optim\.lr\s+1e-05\s+Peak learning rate \(AdamW\)\.$", out, re.M)
    assert re.search(r"^sources\.N\.rollout\.num_generations\s+4\s+G: completions sampled per prompt", out, re.M)
    assert re.search(r"^  learning_rate\s+->\s+optim\.lr$", out, re.M)
    detail = run(["list", "config", "sources.0.batch_size"], capsys)[1]
    assert detail.startswith("sources.N.batch_size = 4\n  Prompts drawn from this source")
    assert "per_device_train_batch_size" in detail


def test_field_docs_are_the_strings_under_the_fields():
    from unift.config import OptimConfig

    docs = catalog.field_docs(OptimConfig)
    assert docs["lr"] == "Peak learning rate (AdamW)."
    assert set(docs) == {f for f in OptimConfig.__dataclass_fields__}


# -- relative paths --------------------------------------------------------------------------


def test_output_dir_is_relative_to_the_working_directory_and_data_also_to_the_config(tmp_path, monkeypatch, capsys):
    """The config lives in conf/ with its data file beside it; `unift train` runs in work/: the
    data is found next to the config (not in work/), and the run goes to work/out, as TRL puts
    output_dir, not to conf/out."""
    conf, work = tmp_path / "conf", tmp_path / "work"
    conf.mkdir()
    work.mkdir()
    (conf / "demos.jsonl").write_text((DATA / "demonstrations.jsonl").read_text())
    config = {"model": {"name": "tiny"}, "steps": 1, "output_dir": "out", "progress": False, "max_length": 64,
              "precision": "fp32", "sources": [{"kind": "demonstration", "objective": "sft", "path": "demos.jsonl",
                                                "batch_size": 2}]}
    (conf / "run.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(work)
    code, _, err = run(["train", "../conf/run.yaml"], capsys)
    assert code == 0, err
    assert (work / "out" / "model").is_dir()
    assert not (conf / "out").exists()
    rows = [json.loads(line) for line in (work / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1]
