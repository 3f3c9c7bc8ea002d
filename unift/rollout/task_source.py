"""The rollout stage of a task source: problems -> hinted prompts -> G rollouts each -> rewards.

For each prompt one hint length is drawn from the schedule (`hints.py`) and shared by the
prompt's group; the hint (a prefix of the reference solution) opens the assistant turn and the
policy writes the rest. The verifier scores hint + completion. The training sequence is
prompt + hint + completion: completion tokens get the policy-gradient, KL and entropy terms,
hint tokens only the NLL term (`unift.objectives.ufthint_loss`).

With `policy_gradient: false` (the SFT preset) nothing is generated: the sequence is prompt +
the whole reference solution, all of it hint, trained by NLL alone.

With `viter: N > 1` (verification iterations), a failed attempt continues the conversation
with the verifier's feedback and the model retries, up to N graded attempts; every attempt is a
training row with its own reward, grouped with the other rows of its prompt for the advantage.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from unift.data.tokenize import Batch, render_prompt
from unift.rollout.hints import HintSpec, cut_points, hint_p, make_hint, sample_hint_length


@dataclass
class RolloutSpec:
    """Sampling and hint settings of a task source (the `rollout:` block of its config)."""

    num_generations: int = 4
    """G: completions sampled per prompt (the group of GRPO's group-relative advantage)."""
    max_new_tokens: int = 128
    """Longest completion."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts."""
    top_p: float = 1.0
    """Nucleus sampling threshold."""
    stop_strings: list[str] = field(default_factory=list)
    """Stop a completion after any of these strings (EOS always stops)."""
    hint: HintSpec = field(default_factory=HintSpec)
    """Hint schedule (none = RFT, cosine = UFT, uniform = R3, stage, full = SFT)."""
    policy_gradient: bool = True
    """False: no rollouts; NLL on the full reference solution only (the SFT preset)."""
    ppo_epochs: int = 1
    """Optimiser steps taken on each batch of rollouts (PPO epochs); the first is on-policy,
    later ones use the first's log-probs as pi_old in the clipped ratio."""
    scale_rewards: str = "group"
    """Advantage normalisation: group | batch | none."""
    viter: int = 1
    """Verification iterations: graded attempts per prompt, retrying with the verifier's feedback."""
    num_problems: int = 4096
    """Training problems generated for the stream (split "train", the run's seed)."""
    backend: str = "hf"
    """Rollout engine: hf (CPU, default) | vllm (GPU machines)."""


@dataclass
class Row:
    prompt_ids: list[int]
    hint_ids: list[int]
    completion_ids: list[int]
    reward: float
    correct: bool
    group: int  # index of the prompt in the batch
    attempt: int = 1


def group_normalise(rewards: torch.Tensor, groups: torch.Tensor, scale: str, eps: float = 1e-6) -> torch.Tensor:
    """(r - mean_g) / (std_g + eps) over rows sharing a group id (groups of any size; std with
    n - 1 as in `unift.objectives.group_advantages`, 0 for a group of one). `scale`: group |
    batch (std of the whole batch) | none."""
    adv = torch.zeros_like(rewards)
    for g in groups.unique():
        sel = groups == g
        r = rewards[sel]
        centred = r - r.mean()
        if scale == "group":
            centred = centred / ((r.std() if r.numel() > 1 else torch.tensor(0.0)) + eps)
        adv[sel] = centred
    if scale == "batch":
        adv = adv / (rewards.std() + eps)
    elif scale not in ("group", "none"):
        raise ValueError(f"scale_rewards must be group | batch | none, not {scale!r}")
    return adv


class TaskRollout:
    """Turns a list of problems into a training batch for one step (see the module docstring)."""

    def __init__(self, task, spec: RolloutSpec, tokenizer, engine, seed: int):
        self.task, self.spec, self.tokenizer, self.engine = task, spec, tokenizer, engine
        self.rng = random.Random(seed)
        self.cached: tuple | None = None  # the last batch, reused for ppo_epochs steps
        self.uses = 0

    def state_dict(self) -> dict:
        return {"rng": self.rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        self.rng.setstate(state["rng"])

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def build(self, problems: list[dict], step: int, total_steps: int, policy) -> tuple[Batch, dict, dict]:
        """-> (batch, extra tensors for the objective, metrics). Within `ppo_epochs` the same
        batch comes back (the trainer keeps pi_old and pi_ref log-probs in `extra`)."""
        if self.cached is not None and self.uses < self.spec.ppo_epochs:
            self.uses += 1
            batch, extra, metrics = self.cached
            return batch, extra, {**metrics, "rollout_tokens": 0, "ppo_epoch": self.uses}
        self.cached = self._build(problems, step, total_steps, policy)
        self.uses = 1
        return self.cached

    def _build(self, problems: list[dict], step: int, total_steps: int, policy) -> tuple[Batch, dict, dict]:
        spec, task = self.spec, self.task
        hints = []
        for problem in problems:
            pieces = task.solution_steps(problem)
            num = len(cut_points(len(pieces), spec.hint.L)) - 1
            k = sample_hint_length(spec.hint, step, total_steps, num, self.rng)
            hints.append((make_hint(pieces, k, spec.hint.L), k, num))
        prompts = [task.prompt(p) for p in problems]
        prompt_ids = [self._ids(render_prompt(self.tokenizer, m)) for m in prompts]
        hint_ids = [self._ids(h) for h, _, _ in hints]
        rollout_tokens, rollout_seconds, attempts = 0, 0.0, []
        if not spec.policy_gradient:  # SFT preset: the whole solution, NLL only
            eos = [self.tokenizer.eos_token_id]
            rows = [Row(p, self._ids(task.reference_completion(prob)) + eos, [], 0.0, True, i)
                    for i, (p, prob) in enumerate(zip(prompt_ids, problems, strict=True))]
        else:
            self.engine.sync(policy)
            seed = self.rng.getrandbits(62)
            out = self.engine.generate([p + h for p, h in zip(prompt_ids, hint_ids, strict=True)],
                                       spec.num_generations, spec.max_new_tokens, spec.temperature,
                                       spec.top_p, spec.stop_strings, seed=seed)
            rollout_tokens, rollout_seconds = out.num_generated_tokens, out.seconds
            rows = []
            for j, (ids, text) in enumerate(zip(out.completion_ids, out.texts, strict=True)):
                i = j // spec.num_generations
                score = task.score(problems[i], hints[i][0] + text)
                rows.append(Row(prompt_ids[i], hint_ids[i], ids, score.reward, score.correct, i))
                if spec.viter > 1:
                    attempts.append((i, prompts[i], hints[i][0] + text, score))
            extra_rows, tokens, seconds = self._retries(problems, attempts)
            rows += extra_rows
            rollout_tokens += tokens
            rollout_seconds += seconds
        return self._collate(rows, hints, step, total_steps, rollout_tokens, rollout_seconds)

    def _retries(self, problems, attempts):
        """Verification iterations: retry failed attempts with the verifier's feedback."""
        from unift.tasks import retry_messages

        rows, tokens, seconds = [], 0, 0.0
        for attempt in range(2, self.spec.viter + 1):
            failed = [(i, m, c, s) for i, m, c, s in attempts if not s.correct]
            if not failed:
                break
            convs = [retry_messages(self.task, problems[i], m, c, s) for i, m, c, s in failed]
            ids = [self._ids(render_prompt(self.tokenizer, c)) for c in convs]
            out = self.engine.generate(ids, 1, self.spec.max_new_tokens, self.spec.temperature, self.spec.top_p,
                                       self.spec.stop_strings, seed=self.rng.getrandbits(62))
            tokens += out.num_generated_tokens
            seconds += out.seconds
            attempts = []
            for (i, _, _, _), conv, p, c, text in zip(failed, convs, ids, out.completion_ids, out.texts, strict=True):
                score = self.task.score(problems[i], text)
                rows.append(Row(p, [], c, score.reward, score.correct, i, attempt))
                attempts.append((i, conv, text, score))
        return rows, tokens, seconds

    def _collate(self, rows: list[Row], hints, step, total_steps, rollout_tokens, rollout_seconds):
        pad = self.tokenizer.pad_token_id
        length = max(len(r.prompt_ids) + len(r.hint_ids) + len(r.completion_ids) for r in rows)
        n = len(rows)
        ids = torch.full((n, length), pad, dtype=torch.long)
        attn = torch.zeros((n, length), dtype=torch.long)
        hint = torch.zeros((n, length), dtype=torch.bool)
        comp = torch.zeros((n, length), dtype=torch.bool)
        for j, r in enumerate(rows):
            p, h, c = len(r.prompt_ids), len(r.hint_ids), len(r.completion_ids)
            ids[j, : p + h + c] = torch.tensor(r.prompt_ids + r.hint_ids + r.completion_ids)
            attn[j, : p + h + c] = 1
            hint[j, p : p + h] = True
            comp[j, p + h : p + h + c] = True
        rewards = torch.tensor([r.reward for r in rows])
        groups = torch.tensor([r.group for r in rows])
        advantages = group_normalise(rewards, groups, self.spec.scale_rewards)
        batch = Batch(ids, attn, hint | comp)
        # masks in the log-prob (target) space: position t predicts token t + 1
        extra = {"advantages": advantages, "completion_mask": comp[:, 1:], "hint_mask": hint[:, 1:]}
        first = [r for r in rows if r.attempt == 1]
        solved = {r.group for r in rows if r.correct}
        metrics = {
            "hint_fraction": sum(k > 0 for _, k, _ in hints) / len(hints),
            "hint_tokens_mean": sum(len(r.hint_ids) for r in first) / len(first),
            "hint_p": hint_p(self.spec.hint, step, total_steps),
            "completion_tokens_mean": sum(len(r.completion_ids) for r in rows) / len(rows),
            "rollout_tokens": rollout_tokens,
            "rollout_tokens_per_s": rollout_tokens / rollout_seconds if rollout_seconds else 0.0,
            "ppo_epoch": 1,
        }
        if self.spec.policy_gradient:  # the SFT preset samples nothing, so it has no reward
            metrics["reward_mean"] = float(torch.tensor([r.reward for r in first]).mean())
            metrics["correct_rate"] = sum(r.correct for r in first) / len(first)
        if self.spec.viter > 1:
            metrics["success_rate"] = len(solved) / len(hints)
            metrics["attempts_mean"] = len(rows) / len(first)
        return batch, extra, metrics
