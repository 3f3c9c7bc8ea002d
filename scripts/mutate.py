"""Plant known training bugs one at a time and check that the tests meant to catch them fail.

    python scripts/mutate.py                  # every mutation, on a copy of the working tree
    python scripts/mutate.py --only kl        # mutations whose name contains "kl"
    python scripts/mutate.py --head           # a copy of HEAD instead (committed files only)
    python scripts/mutate.py --with-old       # also run the earlier tests (most let the bug through)

The repository is copied to a temporary directory (tracked and untracked, not ignored, files);
each mutation is a text substitution in one file of the copy, the tests run there with
`OMP_NUM_THREADS=1 python -m pytest -q -x TESTS`, and the file is restored. A baseline run
without mutation comes first: its tests must pass, or no result would mean anything. A mutation
whose pattern is no longer in its file is reported as STALE (update the pattern here).

Exit status: 0 when every mutation was caught, 1 when one survived, 2 when the baseline failed or
a pattern is stale. CI does not run this (minutes on 2 cores); run it after changing the trainer
or these tests. The guards: tests/train/test_guards_*.py, tests/train/test_shipped_configs.py,
tests/test_eval_scripted.py, the LR tests of tests/rl/test_uft_fidelity.py, the micro-batch tests
of tests/train/test_exactness.py and the group-id advantages of tests/objectives.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Mutation:
    name: str
    what: str
    path: str  # file in the repository
    old: str  # exact text, found exactly once
    new: str
    tests: list[str]  # must fail
    old_tests: list[str] = field(default_factory=list)  # --with-old: the earlier tests, for comparison


GUARDS = "tests/train/test_guards_step.py"

MUTATIONS = [
    Mutation("weights-dropped", "the source weights dropped from the backward total",
             "unift/train/step.py", "total = total + src.weight * loss", "total = total + loss",
             [f"{GUARDS}::test_mix_gradient_is_the_weighted_sum_of_single_source_gradients"],
             ["tests/train/test_trainer.py::test_fifty_fifty_mix_sums_weighted_losses"]),
    Mutation("kl-reversed", "kl/ref computes KL(pi_ref || pi) instead of KL(pi || pi_ref)",
             "unift/train/logprobs.py", "(logp.exp() * (logp - ref_full[i:i + _CHUNK])).sum(-1)",
             "(ref_full[i:i + _CHUNK].exp() * (ref_full[i:i + _CHUNK] - logp)).sum(-1)",
             [f"{GUARDS}::test_kl_ref_metric_is_kl_of_pi_from_pi_ref_over_completion_tokens"],
             ["tests/train/test_trainer.py::test_fifty_fifty_mix_sums_weighted_losses"]),
    Mutation("lora-ref-copy", "with LoRA, pi_ref is a frozen deep copy of the policy",
             "unift/models.py", "if not is_peft(policy):", "if True:",
             [f"{GUARDS}::test_lora_reference_stores_no_copy_of_the_weights"],
             ["tests/train/test_trainer.py::test_lora_reference_is_the_adapter_free_network"]),
    Mutation("lora-ref-hidden-copy", "with LoRA, pi_ref keeps an unused full copy beside the adapter-free network",
             "unift/models.py", "        self.policy = policy\n",
             "        self.policy = policy\n        self._spare = copy.deepcopy(policy)\n",
             [f"{GUARDS}::test_lora_reference_stores_no_copy_of_the_weights"],
             ["tests/train/test_trainer.py::test_lora_reference_is_the_adapter_free_network"]),
    Mutation("lr-always-1", "lr_lambda returns 1 at every step",
             "unift/train/run.py", "    if step < warmup:\n        return (step + 1) / (warmup + 1)\n",
             "    return 1.0\n",
             ["tests/rl/test_uft_fidelity.py::test_lr_of_a_run_follows_the_schedule"]),
    Mutation("lr-schedule-unused", "the run's scheduler ignores the configured schedule (multiplier 1)",
             "unift/train/run.py", "functools.partial(lr_lambda, ", "functools.partial(lambda step, **kw: 1.0, ",
             ["tests/rl/test_uft_fidelity.py::test_lr_of_a_run_follows_the_schedule"]),
    Mutation("continue-random-weights", "a model directory (a previous run) loads its config but not its weights",
             "unift/models.py", "model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)",
             "model = AutoModelForCausalLM.from_config(AutoModelForCausalLM.from_pretrained(path).config).to(dtype)",
             ["tests/train/test_guards_continue.py"],
             ["tests/train/test_trainer.py::test_run_directory_layout"]),
    Mutation("micro-batch-not-drawn", "the run loop draws one micro-batch whatever optim.grad_accum",
             "unift/train/run.py", "policy=policy) for _ in range(opt.grad_accum)]",
             "policy=policy) for _ in range(1)]",
             ["tests/train/test_exactness.py::test_a_run_with_grad_accum_2_trains_on_every_micro_batch"]),
    Mutation("micro-batch-dropped", "train_step backpropagates the first micro-batch only",
             "unift/train/step.py", "    for micro in micro_batches:\n        total = 0.0",
             "    for micro in micro_batches[:1]:\n        total = 0.0",
             ["tests/train/test_exactness.py::test_grad_accum_2_equals_1_on_the_same_global_batch",
              "tests/train/test_exactness.py::test_a_run_with_grad_accum_2_trains_on_every_micro_batch"]),
    Mutation("group-ids-ignored", "group advantages read the group ids as if sorted (rows of a group adjacent)",
             "unift/objectives/policy_gradient.py",
             "    adv = torch.zeros_like(rewards)\n    for g in groups.unique():",
             "    adv = torch.zeros_like(rewards)\n    groups = groups.sort().values\n    for g in groups.unique():",
             ["tests/objectives/test_policy_gradient.py::test_group_advantages_with_group_ids_by_hand"],
             ["tests/objectives/test_policy_gradient.py::test_group_advantages_by_hand"]),
    Mutation("config-bad-param", "a shipped config names an objective param that does not exist",
             "configs/dpo.yaml", "params: {sft_weight: 0.0}", "params: {sft_wieght: 0.0}",
             ["tests/train/test_shipped_configs.py"],
             ["tests/train/test_config.py::test_every_shipped_config_builds"]),
    Mutation("config-bad-task", "a shipped task-source config names a task that does not exist",
             "configs/tiny-rl.yaml", "task: countdown", "task: count_down",
             ["tests/train/test_shipped_configs.py"],
             ["tests/train/test_config.py::test_every_shipped_config_builds"]),
    Mutation("eval-pass-k-grouping", "pass@k groups the samples sample-major (they are prompt-major)",
             "unift/evaluate.py", "i = j // k", "i = j % n",
             ["tests/test_eval_scripted.py"],
             ["tests/test_evaluate.py::test_pass_at_k_and_success_at_j_follow_the_script"]),
    Mutation("eval-retry-without-feedback", "retries re-send the first prompt, not the conversation with feedback",
             "unift/evaluate.py", "engine.generate([_encode(tokenizer, convs[i]) for i in order], 1,",
             "engine.generate([prompt_ids[i] for i in order], 1,",
             ["tests/test_eval_scripted.py"],
             ["tests/test_evaluate.py::test_pass_at_k_and_success_at_j_follow_the_script"]),
    Mutation("eval-success-not-cumulative", "success@j counts problems solved at attempt j only",
             "unift/evaluate.py", "sum(0 < a <= attempt for a in solved_at)", "sum(a == attempt for a in solved_at)",
             ["tests/test_eval_scripted.py"],
             ["tests/test_evaluate.py::test_pass_at_k_and_success_at_j_follow_the_script"]),
    Mutation("evaluator-ignores-k", "the in-run evaluator ignores eval.k",
             "unift/train/evals.py", "k=self.k,", "k=1,",
             ["tests/test_eval_scripted.py::test_a_run_logs_the_scripted_rates_at_every_evaluation"]),
]


def copy_repo(dst: Path, head: bool) -> None:
    if head:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(dst)], input=archive.stdout, check=True)
        return
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():  # deleted but still tracked: skip
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def pytest(copy: Path, tests: list[str]) -> tuple[bool, str, float]:
    """(passed, last lines of the output, seconds)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                          cwd=copy, env=env, capture_output=True, text=True)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    summary = next((line for line in reversed(lines) if " passed" in line or " failed" in line or "error" in line),
                   lines[-1] if lines else "")
    return proc.returncode == 0, summary.strip("= "), time.time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="run the mutations whose name contains this")
    parser.add_argument("--head", action="store_true", help="mutate a copy of HEAD, not of the working tree")
    parser.add_argument("--with-old", action="store_true", help="also run the earlier tests, for comparison")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy")
    args = parser.parse_args()
    mutations = [m for m in MUTATIONS if not args.only or args.only in m.name]
    copy = Path(tempfile.mkdtemp(prefix="unift-mutate."))
    try:
        copy_repo(copy, args.head)
        where = subprocess.run([sys.executable, "-c", "import unift; print(unift.__file__)"], cwd=copy,
                               env={**os.environ, "PYTHONPATH": str(copy)}, capture_output=True, text=True).stdout
        if not where.startswith(str(copy)):
            print(f"the copy's tests would import unift from {where.strip()!r}, not from {copy}")
            return 2
        print(f"copy of {'HEAD' if args.head else 'the working tree'} at {copy}")
        tests = sorted({t for m in mutations for t in m.tests})
        ok, summary, secs = pytest(copy, tests)
        print(f"{'baseline':28s} {'pass' if ok else 'FAIL':8s} {secs:5.0f}s  {summary}")
        if not ok:
            print("the tests fail without a mutation: fix that first")
            return 2
        status = 0
        for m in mutations:
            path = copy / m.path
            original = path.read_text()
            if original.count(m.old) != 1:
                print(f"{m.name:28s} STALE    pattern found {original.count(m.old)} times in {m.path}")
                status = max(status, 2)
                continue
            path.write_text(original.replace(m.old, m.new))
            try:
                ok, summary, secs = pytest(copy, m.tests)
                print(f"{m.name:28s} {'SURVIVED' if ok else 'caught':8s} {secs:5.0f}s  {summary}   [{m.what}]")
                status = max(status, int(ok))
                if args.with_old and m.old_tests:
                    old_ok, old_summary, old_secs = pytest(copy, m.old_tests)
                    print(f"{'':28s} {'older tests ' + ('pass' if old_ok else 'fail'):18s} {old_secs:4.0f}s  "
                          f"{' '.join(t.split('::')[-1] for t in m.old_tests)}")
            finally:
                path.write_text(original)
        print("every mutation was caught" if status == 0 else "some mutation was not caught" if status == 1
              else "see STALE above")
        return status
    finally:
        if args.keep:
            print(f"kept {copy}")
        else:
            shutil.rmtree(copy, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
