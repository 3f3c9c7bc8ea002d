"""`unift compare`: several algorithms ("arms") trained under one protocol, evaluated on ID and OOD
test sets along the way, in one HTML report.

    unift compare --task countdown --algos sft,rft,sft-rft,r3,uft --budget 2e15     # FLOP-matched
    unift compare --match steps --steps 100 --seeds 0,1,2 --algos sft,rft,uft        # step-matched
    unift compare --algos rft,uft --budget 5e14 --set lr=1e-5 --set uft.lr=5e-5
    unift compare --report-only runs/compare-countdown      # rebuild the report of a finished run
    unift quickstart                                        # the README's main command

What a comparison sets: `Settings` (the start, the task and its test sets, the arms, the protocol,
seeds, evaluations) and `Settings.run`, the run values of every run by dotted RunConfig key
(`RUN_DEFAULTS`, the task's `TASK_DEFAULTS`, then --set, whose short names such as `lr` or
`eval_n` are `ALIASES` of RunConfig keys).

Two protocols (`Settings.match`):
- steps (the UFT paper): every arm the same optimiser steps of the same prompts per step, no FLOP
  limit; a sequence (sft-rft) splits the steps by share (`split_steps`);
- flops (the SFT-vs-RL study): every run gets `max_flops` = budget x share, and `steps` estimated
  from the budget (`budget.flops_per_step`, the trainer's accounting of `unift.train.flops`) so
  the LR and hint schedules span the run; the trainer stops at the step boundary nearest its
  budget, training on past the estimate at the schedules' final values if it was short
  (`RunConfig.max_flops_fill`).

Every algorithm is a list of stages, each a run of the one trainer with a task source and an
algorithm preset (`unift.rollout.presets`); SFT-RFT is two: SFT, then RFT from the SFT run's
directory. The base model is evaluated once (step 0, 0 FLOPs); every run then evaluates on the
same test sets every budget / evals FLOPs or steps / evals steps (`RunConfig.eval`), with the
task's stop strings unless `stop_strings` says otherwise.

Modules: `settings` (Settings, run values and their short names, arms, --set overrides, test
sets), `budget` (the steps estimate), `runs` (run configs, training, the manifest), `cli` (the
commands).

Layout of a comparison directory:
    compare.json        the manifest: protocol, settings, test sets, arms, their seeds and run directories
    base/evals.jsonl    the base model's evaluation (step 0, 0 FLOPs)
    configs/NAME.yaml   each run's resolved config (`unift train configs/NAME.yaml` re-runs it)
    runs/NAME/          each run: metrics.jsonl, evals.jsonl, samples.jsonl, model/, ...
                        NAME: the arm (sft), a sequence's stage (sft-rft_2_rft), with -sSEED when
                        there are several seeds (uft-s0, uft-s1, sft-rft_2_rft-s1)
    report.html, *.png  the report (`unift.report.build_report`)

A run whose directory already holds a finished run of the same config is not trained again, so
an interrupted comparison continues where it stopped.
"""

from unift.compare.budget import (
    RETRY_FAIL,
    TokenLengths,
    estimate_steps,
    flops_per_step,
    mean_hint_share,
    token_lengths,
)
from unift.compare.cli import (
    QUICKSTART,
    QUICKSTART_OUT,
    build_parser,
    main,
    parse_seeds,
    quickstart,
    run_settings_help,
    settings_from_args,
)
from unift.compare.runs import (
    BaseModel,
    PlannedRun,
    base_key,
    build_run_config,
    evaluate_base,
    finished,
    plan,
    protocol_text,
    raw_config,
    run_comparison,
    run_name,
    say,
    shared_config,
    train_stage,
)
from unift.compare.settings import (
    ALIASES,
    DEFAULTS,
    PROTOCOLS,
    RUN_DEFAULTS,
    SEQUENCES,
    TASK_DEFAULTS,
    Arm,
    ArmOverrides,
    Overrides,
    Settings,
    Stage,
    arm_settings,
    arms_for,
    distributions,
    eval_variants,
    field_doc,
    id_label,
    parse_overrides,
    resolve,
    settings_for,
    split_steps,
    task_stop_strings,
)

__all__ = [
    "ALIASES", "DEFAULTS", "PROTOCOLS", "QUICKSTART", "QUICKSTART_OUT", "RETRY_FAIL", "RUN_DEFAULTS", "SEQUENCES",
    "TASK_DEFAULTS", "Arm", "ArmOverrides", "BaseModel", "Overrides", "PlannedRun", "Settings", "Stage",
    "TokenLengths", "arm_settings", "arms_for", "base_key", "build_parser", "build_run_config", "distributions",
    "estimate_steps", "eval_variants", "evaluate_base", "field_doc", "finished", "flops_per_step", "id_label", "main",
    "mean_hint_share", "parse_overrides", "parse_seeds", "plan", "protocol_text", "quickstart", "raw_config",
    "resolve", "run_comparison", "run_name", "run_settings_help", "say", "settings_for", "settings_from_args",
    "shared_config", "split_steps", "task_stop_strings", "token_lengths", "train_stage",
]
