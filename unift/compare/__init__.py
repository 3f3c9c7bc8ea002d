"""`unift compare`: several algorithms ("arms") trained under one protocol, evaluated on ID and OOD
test sets along the way, in one HTML report.

    unift compare --task countdown --algos sft,rft,sft-rft,r3,uft --budget 2e15     # FLOP-matched
    unift compare --match steps --steps 100 --seeds 0,1,2 --algos sft,rft,uft        # step-matched
    unift compare --algos rft,uft --budget 5e14 --set lr=1e-5 --set uft.lr=5e-5
    unift compare --report-only runs/compare-countdown      # rebuild the report of a finished run
    unift quickstart                                        # the README's main command

Two protocols (`Settings.match`):
- steps (the UFT paper): every arm the same optimiser steps of the same prompts per step, no FLOP
  limit; a sequence (sft-rft) splits the steps by share (`split_steps`);
- flops (the SFT-vs-RL study): every run gets `max_flops` = budget x share, and `steps` estimated
  from the budget (`budget.flops_per_step`, the trainer's accounting of `unift.train.flops`) so
  the LR and hint schedules span the run; the trainer stops at the step boundary nearest its
  budget.

Every algorithm is a list of stages, each a run of the one trainer with a task source and an
algorithm preset (`unift.rollout.presets`); SFT-RFT is two: SFT, then RFT from the SFT run's
directory. The base model is evaluated once (step 0, 0 FLOPs); every run then evaluates on the
same test sets every budget / evals FLOPs or steps / evals steps (`RunConfig.eval`), with the
task's stop strings unless `stop_strings` says otherwise.

Modules: `settings` (Settings, arms, --set overrides, test sets), `budget` (the steps estimate),
`runs` (run configs, training, the manifest), `cli` (the commands).

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
    settings_from_args,
)
from unift.compare.runs import (
    BaseModel,
    build_run_config,
    evaluate_base,
    finished,
    protocol_text,
    raw_config,
    run_comparison,
    run_name,
    say,
    train_stage,
)
from unift.compare.settings import (
    DEFAULTS,
    PROTOCOLS,
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
    id_label,
    parse_overrides,
    settings_for,
    split_overrides,
    split_steps,
    stop_strings,
)

__all__ = [
    "DEFAULTS", "PROTOCOLS", "QUICKSTART", "QUICKSTART_OUT", "RETRY_FAIL", "SEQUENCES", "TASK_DEFAULTS",
    "Arm", "ArmOverrides", "BaseModel", "Overrides", "Settings", "Stage", "TokenLengths",
    "arm_settings", "arms_for", "build_parser", "build_run_config", "distributions", "estimate_steps",
    "eval_variants", "evaluate_base", "finished", "flops_per_step", "id_label", "main", "mean_hint_share",
    "parse_overrides", "parse_seeds", "protocol_text", "quickstart", "raw_config", "run_comparison", "run_name", "say",
    "settings_for", "settings_from_args", "split_overrides", "split_steps", "stop_strings", "token_lengths",
    "train_stage",
]
