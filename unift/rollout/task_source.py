"""The rollout stage of a task source: problems -> hinted prompts -> G rollouts each -> rewards.

For each prompt one hint length k is drawn from the schedule (`hints.py`) and shared by the
prompt's group; the hint (a prefix of the reference solution) opens the assistant turn and the
policy writes the rest. The verifier scores hint + completion. The training sequence is
prompt + hint + completion: completion tokens get the policy-gradient, KL and entropy terms,
hint tokens only the NLL term (`unift.objectives.ufthint_loss`). A full hint (k = num) is the
whole reference solution followed by EOS, token for token the SFT preset's target: nothing is
left to generate, so its rows have empty completions and train the NLL term only.

With `policy_gradient: false` (the SFT preset) nothing is generated: the sequence is prompt +
the whole reference solution + EOS, all of it hint, trained by NLL alone.

With `viter: N > 1` (verification iterations), a failed attempt continues the conversation
with the verifier's feedback and the model retries, up to N graded attempts; every attempt is a
training row with its own reward, grouped with the other rows of its prompt for the advantage.

Reward functions (`unift.rollout.rewards`): TRL-style functions called once per rollout batch
on all its rows, before the gate; each row's reward becomes the weighted sum of their rewards
and the verifier's, while `correct` stays the verifier's.

Dynamic sampling (`dynamic_sampling`, DAPO): groups whose rewards are all equal (so all their
advantages are 0) are dropped and new problems rolled out in their place, for up to
`max_resample_batches` more rounds; groups that train without the advantage (hint NLL, expert and
SFT rows) are kept. The extra rounds' compute is in `flops/rollout`.

Mini-batches (`mini_batches: m`): one rollout batch of m x batch_size prompts is generated at
once, its advantages computed over the whole of it, and it is served batch_size prompts at a
time to m successive micro-batch draws (one optimiser step each without gradient accumulation),
`ppo_epochs` times over. pi_old, the policy that generated the rollouts, scores the later
mini-batches before the first update (`old_logps`, and PPO's V_old `old_values`); the first is
on-policy.

Demonstrations in the same stage (`unift.rollout.demos`, docs/methods.md section 8), each off
unless configured, applied in this order after the policy's own rollouts are scored:
    question_hint  QuestA: hard problems (few correct) are sampled again with part of the
                   solution in the question
    prefix         Prefix-RFT: some rollouts of each group continue a prefix of the solution
    expert         LUFFY / CHORD: the solution itself as a completion row, in or beside the group
    gate           HPT / SuperRL: a prompt with few correct rollouts trains by NLL on its solution
                   instead; ReLIFT: such prompts fill a buffer that becomes an SFT step
Expert tokens (expert completions, prefixes) are marked `expert_mask`; the objective's
`expert_loss` decides how they train.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field

import torch

from unift.data.tokenize import Batch, render_prompt
from unift.objectives import group_advantages
from unift.objectives.mixed import prefix_advantages
from unift.rollout.demos import prefix_length, prefix_ratio, question_hint_p, question_with_hint
from unift.rollout.hints import HintSchedule, cut_points, hint_p, make_hint, sample_hint_length
from unift.rollout.rewards import TASK, RewardFuncs, TrainerState, nanmean


@dataclass
class Row:
    prompt_ids: list[int]
    hint_ids: list[int]
    completion_ids: list[int]
    reward: float
    correct: bool
    group: int  # index of the prompt in the batch
    attempt: int = 1
    kind: str = "rollout"
    """rollout (sampled after prompt + hint) | question_hint (sampled after a question with part of
    the solution in it, QuestA) | prefix (hint_ids are an expert prefix, Prefix-RFT) | expert (the
    completion is the reference solution, LUFFY / CHORD) | sft (gated: the whole solution as
    hint, NLL only)."""
    baseline: bool = True
    """Counts in its group's reward mean and std (prefix rollouts and CHORD's extra expert rows
    do not)."""
    messages: list | None = None
    """The conversation the row answers, as chat messages (reward functions' `prompts`)."""
    answer: str = ""
    """The assistant's turn as the verifier scored it (hint or prefix text + completion text)."""
    parts: dict | None = None
    """With reward functions: each reward term by name, the verifier's `task` included
    (`unift.rollout.rewards`); `reward` is their weighted sum (NaN: no term scored the row)."""
    feedback: str = ""
    """The verifier's feedback on `answer` (`Score.feedback`), for samples.jsonl."""


@dataclass
class Drawn:
    """The rows of a rollout batch before it is cut into mini-batches: its problems, each one's
    hint (text, k, number of cut points), its rows (`Row.group` indexes `problems`), the rows the
    policy sampled before the gate (reward metrics), the gated prompts and ReLIFT's SFT batches."""

    problems: list[dict]
    hints: list[tuple[str, int, int]]
    rows: list[Row]
    sampled: list[Row]
    gated: set[int]
    extra: list[RolloutBatch]

    def select(self, groups: list[int]) -> Drawn:
        """Only `groups` (indices of problems), renumbered 0.. in the order given."""
        new = {g: j for j, g in enumerate(groups)}

        def keep(rows: list[Row]) -> list[Row]:
            return [dataclasses.replace(r, group=new[r.group]) for r in rows if r.group in new]

        return Drawn([self.problems[g] for g in groups], [self.hints[g] for g in groups], keep(self.rows),
                     keep(self.sampled), {new[g] for g in self.gated if g in new}, self.extra)

    def __add__(self, other: Drawn) -> Drawn:
        """`other`'s groups after these (renumbered)."""
        n = len(self.problems)

        def shift(rows: list[Row]) -> list[Row]:
            return [dataclasses.replace(r, group=r.group + n) for r in rows]

        return Drawn(self.problems + other.problems, self.hints + other.hints, self.rows + shift(other.rows),
                     self.sampled + shift(other.sampled), self.gated | {g + n for g in other.gated},
                     self.extra + other.extra)


@dataclass
class RolloutBatch:
    """One mini-batch of rollouts, all the objectives see of it. R rows of prompt + hint +
    completion; token tensors are (R, T-1) in target space (position t predicts token t + 1)."""

    batch: Batch
    """Token ids and attention of the rows; its loss mask is hint | completion."""
    advantages: torch.Tensor
    """(R,) group-relative advantages, computed over the whole rollout batch."""
    rewards: torch.Tensor
    """(R,) the verifier's rewards."""
    completion_mask: torch.Tensor
    """Rolled-out tokens: policy gradient, KL and entropy."""
    hint_mask: torch.Tensor
    """Hint tokens (a prefix of the reference solution): the NLL term only."""
    hint_k: torch.Tensor
    """(R,) hint length k of each row's prompt (0 = no hint)."""
    full_hint: torch.Tensor
    """(R,) bool: the whole solution + EOS as hint, nothing generated."""
    max_new_tokens: int
    """Longest completion (Dr. GRPO's constant normaliser)."""
    expert_mask: torch.Tensor | None = None
    """Expert tokens (a reference solution placed where the policy's tokens would be: LUFFY's and
    CHORD's expert rows, Prefix-RFT's prefixes): the objective's `expert_loss` only."""
    step: int = 0
    """The optimiser step the rollouts were sampled for (schedules in the loss: CHORD's mu)."""
    total_steps: int = 1
    """The run's steps."""
    old_logps: torch.Tensor | None = None
    """pi_old, the policy that generated the rows: scored before the first update (later
    mini-batches) or at the first use (the first, on-policy one)."""
    ref_logps: torch.Tensor | None = None
    """pi_ref's log-probs, computed once and kept for later PPO epochs."""
    old_values: torch.Tensor | None = None
    """V_old, the value head's per-token values when the rows were generated (PPO's critic,
    docs/methods.md section 9): scored with pi_old, or at the first use."""
    stats: dict = field(default_factory=dict)
    """Rollout metrics of these rows (reward_mean, reward_by_k/..., rollout_tokens, flops/rollout)."""
    samples: list[dict] = field(default_factory=list)
    """A few decoded prompt / hint / completion / reward rows for samples.jsonl."""

    def on_policy(self, logps: torch.Tensor, values: torch.Tensor | None = None) -> None:
        """At the rows' first use: pi_old (and V_old) that no earlier scoring set are the current
        policy's (and value head's), detached; later PPO epochs reuse them."""
        if self.old_logps is None:
            self.old_logps = logps.detach()
        if self.old_values is None and values is not None:
            self.old_values = values.detach()


class TaskRollout:
    """Turns problems into training mini-batches (see the module docstring)."""

    def __init__(self, task, tokenizer, engine, seed: int, *, num_generations: int, max_new_tokens: int,
                 temperature: float, top_p: float, stop_strings: list[str] | None, hints: HintSchedule,
                 policy_gradient: bool, ppo_epochs: int, mini_batches: int, scale_rewards: str, viter: int,
                 dynamic_sampling: bool, max_resample_batches: int, expert_per_group: int, expert_share: float,
                 prefix_rows: int, prefix_schedule: tuple[float, float, float], gate: str, gate_max_correct: int,
                 gate_buffer_size: int, question_hint_shares: list[float], question_hint_max_correct: int,
                 flops=None, score=None, rewards: RewardFuncs | None = None, refill=None, global_sum=None):
        """The settings are a task source's `rollout:` block (`unift.config.RolloutSpec`, whose fields
        say what each does), its sections flattened: expert_per_group and expert_share are
        `expert`'s, prefix_rows and prefix_schedule (ratio_start, ratio_end, T) `prefix`'s, gate,
        gate_max_correct and gate_buffer_size `gate`'s (mode, max_correct, buffer_size),
        question_hint_shares and question_hint_max_correct `question_hint`'s (p, hard_max_correct);
        stop_strings None: the task's own.
        flops: a `unift.train.flops.ModelFlops` to count the rollouts' compute with;
        score: Batch -> TokenLogps of the current policy without gradient (pi_old of the later
        mini-batches; with PPO's value head, V_old in its `values`);
        rewards: reward functions beside (or instead of) the verifier's reward;
        refill: () -> this process's share of a new draw of as many problems as the first
        (dynamic sampling); global_sum: a number -> its sum over processes (identity for one),
        so that every process takes the same refill rounds and the counts are global."""
        self.task, self.tokenizer, self.engine = task, tokenizer, engine
        self.num_generations, self.max_new_tokens = num_generations, max_new_tokens
        self.temperature, self.top_p, self.hints = temperature, top_p, hints
        self.policy_gradient, self.ppo_epochs, self.mini_batches = policy_gradient, ppo_epochs, mini_batches
        self.scale_rewards, self.viter = scale_rewards, viter
        self.dynamic_sampling, self.max_resample_batches = dynamic_sampling, max_resample_batches
        self.expert_per_group, self.expert_share = expert_per_group, expert_share
        self.prefix_rows, self.prefix_schedule = prefix_rows, tuple(prefix_schedule)
        self.gate, self.gate_max_correct, self.gate_buffer_size = gate, gate_max_correct, gate_buffer_size
        self.question_hint_shares = list(question_hint_shares)
        self.question_hint_max_correct = question_hint_max_correct
        self.own_rollouts = num_generations - expert_per_group - prefix_rows  # G less expert and prefix rows
        self.flops, self.score, self.rewards = flops, score, rewards
        self.refill, self.global_sum = refill, global_sum or (lambda x: x)
        self._synced = False
        self.rng = random.Random(seed)
        self.queue: list[tuple[RolloutBatch, int]] = []  # (mini-batch, epoch) still to serve
        self.buffer: list[dict] = []  # ReLIFT: problems whose rollouts all failed, for an SFT step
        if task is not None:
            self.stop_strings = list(task.stop_strings if stop_strings is None else stop_strings)

    def state_dict(self) -> dict:
        return {"rng": self.rng.getstate(), "buffer": list(self.buffer)}

    def load_state_dict(self, state: dict) -> None:
        self.rng.setstate(state["rng"])
        self.buffer = list(state.get("buffer", []))

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def problems_needed(self, batch_size: int) -> int:
        """Problems the next draw must bring: a new rollout batch's, or none while one is served."""
        return 0 if self.queue else batch_size * self.mini_batches

    def next(self, problems: list[dict], step: int, total_steps: int, policy) -> RolloutBatch:
        """The next mini-batch, rolling out a new batch from `problems` when the last is used up."""
        if not self.queue:
            mbs, extra = self._rollout_batch(problems, step, total_steps, policy)
            self.queue = [(mb, epoch) for epoch in range(1, self.ppo_epochs + 1) for mb in mbs]
            self.queue += [(mb, 1) for mb in extra]  # ReLIFT's SFT step, once, after the RL updates
        mb, epoch = self.queue.pop(0)
        if epoch == 1:
            return mb
        stats = {**mb.stats, "rollout_tokens": 0, "flops/rollout": 0.0, "ppo_epoch": epoch,
                 **{k: 0 for k in mb.stats if k.startswith("dynamic/")}}  # counted at the first epoch
        return dataclasses.replace(mb, stats=stats, samples=[])  # shares pi_old and pi_ref log-probs

    def _generate(self, prompts: list[list[int]], n: int, counts: dict):
        """n samples per prompt; the compute goes into `counts`."""
        out = self.engine.generate(prompts, n, self.max_new_tokens, self.temperature, self.top_p,
                                   self.stop_strings, seed=self.rng.getrandbits(62))
        counts["generated"] += out.num_generated_tokens
        counts["seconds"] += out.seconds
        counts["prefill_tokens"] += sum(len(p) for p in prompts)
        counts["prefill_rows"] += len(prompts)
        return out

    def _rollout_batch(self, problems: list[dict], step: int, total_steps: int, policy):
        """Problems -> (mini-batches, extra SFT mini-batches served once after them)."""
        counts = dict(generated=0, seconds=0.0, prefill_tokens=0, prefill_rows=0)
        self._synced = False
        drawn = self._draw(problems, step, total_steps, policy, counts)
        dynamic = {}
        if self.dynamic_sampling:
            drawn, dynamic = self._dynamic_sampling(drawn, step, total_steps, policy, counts)
        mbs = self._mini_batches(drawn.rows, drawn.hints, drawn.problems, step, total_steps, counts, drawn.sampled,
                                 drawn.gated)
        for j, mb in enumerate(mbs):  # the same keys on every mini-batch (and process); counts on the first
            mb.stats.update({k: v if j == 0 else 0 for k, v in dynamic.items()})
        return mbs, drawn.extra

    def _draw(self, problems: list[dict], step: int, total_steps: int, policy, counts: dict) -> Drawn:
        """Problems -> hints, rollouts, scores and the demonstration methods' rows (module docstring)."""
        task, L = self.task, self.hints.L
        hints = []
        for problem in problems:
            pieces = task.solution_steps(problem)
            num = len(cut_points(len(pieces), L)) - 1
            k = sample_hint_length(self.hints, step, total_steps, num, self.rng)
            hints.append((make_hint(pieces, k, L), k, num))
        prompts = [task.prompt(p) for p in problems]
        prompt_ids = [self._ids(render_prompt(self.tokenizer, m)) for m in prompts]
        eos = [self.tokenizer.eos_token_id]
        # a full hint is the SFT target: the whole solution, then EOS (nothing left to generate)
        full = [not self.policy_gradient or (num > 0 and k == num) for _, k, num in hints]
        hint_ids = [self._ids(self.full_target(prob)) + eos if f else self._ids(h)
                    for prob, (h, _, _), f in zip(problems, hints, full, strict=True)]
        rows: list[Row] = []
        extra: list[RolloutBatch] = []
        if not self.policy_gradient:  # SFT preset: the whole solution, NLL only
            rows = [Row(p, h, [], 0.0, True, i) for i, (p, h) in enumerate(zip(prompt_ids, hint_ids, strict=True))]
            return Drawn(problems, hints, rows, rows, set(), extra)
        n_own = self.own_rollouts
        todo = [i for i in range(len(problems)) if not full[i]]
        if todo and not self._synced:  # once per rollout batch (refill rounds use the same policy)
            self.engine.sync(policy)
            self._synced = True
        out = self._generate([prompt_ids[i] + hint_ids[i] for i in todo], n_own, counts) if todo else None
        done = {i: [] for i in range(len(problems)) if full[i]}
        attempts = []
        for j, (ids, text) in enumerate(zip(out.completion_ids, out.texts, strict=True) if out else ()):
            i = todo[j // n_own]
            done.setdefault(i, []).append((ids, text))
        for i in range(len(problems)):
            gens = done[i] or [([], "")] * self.num_generations  # full hint: G identical rows
            for ids, text in gens:
                answer = (self.full_target(problems[i]) if full[i] else hints[i][0]) + text
                score = task.score(problems[i], answer)
                rows.append(Row(prompt_ids[i], hint_ids[i], ids, score.reward, score.correct, i,
                                messages=prompts[i], answer=answer, feedback=score.feedback))
                if self.viter > 1:
                    attempts.append((i, prompts[i], answer, score))
        rows += self._retries(problems, attempts, counts)
        # demonstrations in the same stage (module docstring), each a no-op unless configured
        rows = self._question_hints(rows, problems, prompts, todo, step, total_steps, counts)
        rows += self._prefix_rows(problems, prompt_ids, prompts, todo, step, total_steps, counts)
        rows += self._expert_rows(problems, prompt_ids, prompts, todo, rows)
        self._apply_rewards(rows, problems, step, total_steps)
        sampled = rows  # the policy's own results, before the gate drops any (reward metrics)
        rows, extra, gated = self._gate(rows, problems, prompt_ids, step, total_steps)
        return Drawn(problems, hints, rows, sampled, gated, extra)

    def _apply_rewards(self, rows: list[Row], problems: list[dict], step: int, total_steps: int) -> None:
        """With reward functions: each row's reward becomes the weighted sum of the terms
        (`unift.rollout.rewards`), one call per function for all rows; `correct` stays the verifier's."""
        if self.rewards is None or not rows:
            return
        totals, parts = self.rewards([r.messages for r in rows], [r.answer for r in rows],
                                     [r.hint_ids + r.completion_ids for r in rows],
                                     [problems[r.group] for r in rows], [r.reward for r in rows],
                                     TrainerState(step, total_steps))
        for j, (r, total) in enumerate(zip(rows, totals, strict=True)):
            r.reward, r.parts = total, {name: values[j] for name, values in parts.items()}

    def _dynamic_sampling(self, drawn: Drawn, step: int, total_steps: int, policy, counts: dict):
        """DAPO (Yu et al. 2025, section 3.2; verl's `filter_groups`): drop the groups whose rewards
        are all equal, whose advantages are all 0, and roll out new problems in their place, up
        to `max_resample_batches` more rounds; each round takes a whole new draw from the source
        (the same on every process) and generates this process's missing groups from it. Groups
        that also train without the advantage (hint tokens' NLL, expert rows, gated SFT rows) are
        kept (docs/methods.md section 6.7). At the limit the batch trains with the groups it has,
        zero-variance ones making up at least one per mini-batch.
        -> (the batch, {dynamic/dropped_groups, dynamic/rounds, dynamic/missing_groups})."""
        if self.refill is None:
            raise ValueError("rollout.dynamic_sampling needs a problem supplier (TaskRollout's refill)")
        target = len(drawn.problems)
        keep = signal_groups(drawn.rows, target)
        first, kept = drawn, drawn.select(keep)
        dropped, rounds = target - len(keep), 0
        while rounds < self.max_resample_batches and self.global_sum(target - len(kept.problems)) > 0:
            more = self.refill()  # every process takes the draw, so the sources stay in step
            need = target - len(kept.problems)
            rounds += 1
            if need <= 0:
                continue
            new = self._draw(more[:need], step, total_steps, policy, counts)
            keep = signal_groups(new.rows, len(new.problems))
            dropped += len(new.problems) - len(keep)
            kept = kept + new.select(keep)  # (ReLIFT's SFT batches of every round come along)
        missing = target - len(kept.problems)
        floor = max(1, min(self.mini_batches, target))
        if len(kept.problems) < floor:  # zero-variance groups of the first draw make up the number
            signal = signal_groups(first.rows, target)
            fill = [g for g in range(target) if g not in signal][: floor - len(kept.problems)]
            kept = kept + dataclasses.replace(first.select(fill), extra=[])
        stats = {"dynamic/dropped_groups": self.global_sum(dropped), "dynamic/rounds": rounds,
                 "dynamic/missing_groups": self.global_sum(missing)}
        return kept, stats

    def full_target(self, problem: dict) -> str:
        """The whole reference solution: the SFT preset's target and the full hint (before EOS)."""
        return self.task.reference_completion(problem)

    def _retries(self, problems, attempts, counts: dict) -> list[Row]:
        """Verification iterations: retry failed attempts with the verifier's feedback."""
        from unift.tasks import retry_messages

        rows = []
        for attempt in range(2, self.viter + 1):
            failed = [(i, m, c, s) for i, m, c, s in attempts if not s.correct]
            if not failed:
                break
            convs = [retry_messages(self.task, problems[i], m, c, s) for i, m, c, s in failed]
            ids = [self._ids(render_prompt(self.tokenizer, c)) for c in convs]
            out = self._generate(ids, 1, counts)
            attempts = []
            for (i, _, _, _), conv, p, c, text in zip(failed, convs, ids, out.completion_ids, out.texts, strict=True):
                score = self.task.score(problems[i], text)
                rows.append(Row(p, [], c, score.reward, score.correct, i, attempt, messages=conv, answer=text,
                                feedback=score.feedback))
                attempts.append((i, conv, text, score))
        return rows

    def _question_hints(self, rows, problems, prompts, todo, step, total_steps, counts) -> list[Row]:
        """QuestA: the groups of hard problems (at most `hard_max_correct` correct) are sampled
        again with part of the solution in the question; those rollouts replace the group's."""
        p = question_hint_p(self.question_hint_shares, step, total_steps)
        if p <= 0:
            return rows
        correct = {i: sum(r.correct for r in rows if r.group == i and r.attempt == 1) for i in todo}
        most = self.question_hint_max_correct
        hard = [i for i in todo if most < 0 or correct[i] <= most]
        hinted = {i: question_with_hint(prompts[i], self.full_target(problems[i]), p) for i in hard}
        asked = [(i, self._ids(render_prompt(self.tokenizer, hinted[i]))) for i in hard
                 if hinted[i] != prompts[i]]  # a shown part under 10 characters adds no hint
        if not asked:
            return rows
        n = self.own_rollouts
        out = self._generate([ids for _, ids in asked], n, counts)
        replaced = {i for i, _ in asked}
        rows = [r for r in rows if r.group not in replaced]
        for j, (ids, text) in enumerate(zip(out.completion_ids, out.texts, strict=True)):
            i, prompt = asked[j // n]
            score = self.task.score(problems[i], text)
            rows.append(Row(prompt, [], ids, score.reward, score.correct, i, kind="question_hint", messages=hinted[i],
                            answer=text, feedback=score.feedback))
        return rows

    def _prefix_rows(self, problems, prompt_ids, prompts, todo, step, total_steps, counts) -> list[Row]:
        """Prefix-RFT: `prefix.rows` rollouts per prompt continue a prefix of the reference
        solution's tokens; they take their advantage against the unprefixed rows of the group."""
        n = self.prefix_rows
        if n == 0 or not todo:
            return []
        ratio = prefix_ratio(step, total_steps, *self.prefix_schedule)
        prefixes = []
        for i in todo:
            target = self._ids(self.full_target(problems[i]))
            prefixes.append(target[: prefix_length(ratio, len(target))])
        out = self._generate([prompt_ids[i] + pre for i, pre in zip(todo, prefixes, strict=True)], n, counts)
        rows = []
        for j, (ids, text) in enumerate(zip(out.completion_ids, out.texts, strict=True)):
            i, pre = todo[j // n], prefixes[j // n]
            answer = self.tokenizer.decode(pre) + text
            score = self.task.score(problems[i], answer)
            rows.append(Row(prompt_ids[i], pre, ids, score.reward, score.correct, i,
                            kind="prefix" if pre else "rollout", baseline=not pre, messages=prompts[i], answer=answer,
                            feedback=score.feedback))
        return rows

    def _expert_rows(self, problems, prompt_ids, prompts, todo, rows) -> list[Row]:
        """LUFFY: `expert.per_group` rows of each group are the reference solution + EOS (scored,
        in the group's statistics). CHORD: round(share / (1 - share) x own rows) more such rows,
        one per prompt in turn, outside the groups."""
        per_group, share = self.expert_per_group, self.expert_share
        if not todo or (per_group == 0 and share == 0):
            return []
        eos = [self.tokenizer.eos_token_id]

        def expert(i: int, baseline: bool) -> Row:
            target = self.full_target(problems[i])
            score = self.task.score(problems[i], target)
            return Row(prompt_ids[i], [], self._ids(target) + eos, score.reward, score.correct, i,
                       kind="expert", baseline=baseline, messages=prompts[i], answer=target, feedback=score.feedback)

        out = [expert(i, True) for i in todo for _ in range(per_group)]
        n_extra = round(share / (1 - share) * len(rows))
        out += [expert(todo[j % len(todo)], False) for j in range(n_extra)]
        return out

    def _gate(self, rows, problems, prompt_ids, step, total_steps) -> tuple[list[Row], list[RolloutBatch], set]:
        """HPT / SuperRL (switch): a prompt with at most `gate.max_correct` correct rollouts trains
        by NLL on its reference solution instead (its rows replaced by one `sft` row). ReLIFT
        (buffer): such prompts join the buffer; a full buffer becomes one SFT mini-batch."""
        if self.gate == "none":
            return rows, [], set()
        groups = sorted({r.group for r in rows})
        correct = {i: sum(r.correct for r in rows if r.group == i and r.kind != "expert") for i in groups}
        failed = [i for i in groups if correct[i] <= self.gate_max_correct]
        extra = []
        if self.gate == "switch":
            rows = [r for r in rows if r.group not in failed] + [self._sft_row(problems[i], prompt_ids[i], i)
                                                                  for i in failed]
        else:  # buffer
            self.buffer += [problems[i] for i in failed]
            size = self.gate_buffer_size
            if len(self.buffer) >= size:
                batch, self.buffer = self.buffer[:size], self.buffer[size:]
                sft = [self._sft_row(p, self._ids(render_prompt(self.tokenizer, self.task.prompt(p))), i)
                       for i, p in enumerate(batch)]
                mb = self.collate(sft, torch.zeros(len(sft)), [0] * len(sft), step, total_steps)
                mb.stats = {"gate/sft_step": 1, "gate/buffer_size": len(self.buffer), "rollout_tokens": 0,
                            "rollout_tokens_per_s": 0.0, "flops/rollout": 0.0, "ppo_epoch": 1,
                            "hint_p": hint_p(self.hints, step, total_steps)}
                extra.append(mb)
        return rows, extra, set(failed)

    def _sft_row(self, problem: dict, prompt_ids: list[int], group: int) -> Row:
        """The whole reference solution + EOS as hint: the SFT preset's row, NLL only."""
        hint = self._ids(self.full_target(problem)) + [self.tokenizer.eos_token_id]
        return Row(prompt_ids, hint, [], 0.0, True, group, kind="sft")

    def _mini_batches(self, rows: list[Row], hints, problems, step, total_steps, counts, sampled: list[Row],
                      gated: set) -> list[RolloutBatch]:
        """Advantages over the whole rollout batch, then `mini_batches` slices by prompt, pi_old
        log-probs for all but the first (scored now, before any update). `sampled`: the rows the
        policy sampled (before the gate), for the reward metrics; `gated`: prompts sent to SFT."""
        rewards, groups = torch.tensor([r.reward for r in rows]), torch.tensor([r.group for r in rows])
        unscored = torch.isnan(rewards)  # every reward term returned None (TRL: out of the baseline, A = 0)
        if all(r.baseline for r in rows) and not unscored.any():
            advantages = group_advantages(rewards, groups, self.scale_rewards)
        else:  # prefix rollouts and CHORD's extra expert rows stay out of the group statistics
            baseline = torch.tensor([r.baseline for r in rows]) & ~unscored
            advantages = prefix_advantages(rewards, groups, baseline, self.scale_rewards)
            advantages[unscored] = 0.0
        m = max(1, min(self.mini_batches, len(hints)))
        bounds = [round(i * len(hints) / m) for i in range(m + 1)]
        rollout_flops = 0.0
        if self.flops is not None:
            rollout_flops = self.flops.prefill(counts["prefill_tokens"], counts["prefill_rows"]) \
                + self.flops.decode(counts["generated"])
        out = []
        for s in range(m):
            sel = [j for j, r in enumerate(rows) if bounds[s] <= r.group < bounds[s + 1]]
            part = [rows[j] for j in sel]
            rb = self.collate(part, advantages[sel], [hints[r.group][1] for r in part], step, total_steps)
            prompts = range(bounds[s], bounds[s + 1])
            rb.stats = self._stats(part, [r for r in sampled if r.group in prompts], hints, prompts, step,
                                   total_steps, gated)
            rb.samples = self._samples(part, problems, hints)
            stats = rb.stats
            if s == 0:
                stats.update(rollout_tokens=counts["generated"],
                             rollout_tokens_per_s=counts["generated"] / counts["seconds"] if counts["seconds"] else 0.0)
            else:
                stats.update(rollout_tokens=0, rollout_tokens_per_s=0.0)
            if s > 0 and self.score is not None and self.policy_gradient:
                old = self.score(rb.batch)  # pi_old = the policy that generated these rollouts
                rb.old_logps, rb.old_values = old.logps, old.values
                if self.flops is not None:
                    rollout_flops += self.flops.forward(old.tokens, old.head_rows)
            out.append(rb)
        out[0].stats["flops/rollout"] = rollout_flops
        for mb in out[1:]:
            mb.stats["flops/rollout"] = 0.0
        return out

    def collate(self, rows: list[Row], advantages: torch.Tensor, hint_k: list[int], step: int = 0,
                total_steps: int = 1) -> RolloutBatch:
        """Rows -> a right-padded RolloutBatch (stats and samples are filled by the caller)."""
        pad = self.tokenizer.pad_token_id
        length = max(len(r.prompt_ids) + len(r.hint_ids) + len(r.completion_ids) for r in rows)
        n = len(rows)
        ids = torch.full((n, length), pad, dtype=torch.long)
        attn = torch.zeros((n, length), dtype=torch.long)
        hint = torch.zeros((n, length), dtype=torch.bool)
        comp = torch.zeros((n, length), dtype=torch.bool)
        expert = torch.zeros((n, length), dtype=torch.bool)
        for j, r in enumerate(rows):
            p, h, c = len(r.prompt_ids), len(r.hint_ids), len(r.completion_ids)
            ids[j, : p + h + c] = torch.tensor(r.prompt_ids + r.hint_ids + r.completion_ids)
            attn[j, : p + h + c] = 1
            # a prefix row's hint and an expert row's completion are expert tokens
            (expert if r.kind == "prefix" else hint)[j, p : p + h] = True
            (expert if r.kind == "expert" else comp)[j, p + h : p + h + c] = True
        eos = self.tokenizer.eos_token_id
        full = [bool(r.hint_ids) and r.hint_ids[-1] == eos and not r.completion_ids for r in rows]
        # masks in the log-prob (target) space: position t predicts token t + 1
        rewards = torch.tensor([r.reward for r in rows]).nan_to_num(0.0)  # unscored rows: 0 (PPO's critic reads it)
        return RolloutBatch(Batch(ids, attn, hint | comp | expert), advantages,
                            rewards, comp[:, 1:], hint[:, 1:], torch.tensor(hint_k),
                            torch.tensor(full), self.max_new_tokens, expert[:, 1:], step, total_steps)

    def _stats(self, rows: list[Row], sampled: list[Row], all_hints, prompts: range, step: int, total_steps: int,
               gated: set) -> dict:
        """Metrics of the rows of `prompts` (indices into the rollout batch); rewards from the
        policy's own rollouts among `sampled`."""
        hints = [all_hints[i] for i in prompts]
        first = [r for r in sampled if r.attempt == 1 and r.kind in ("rollout", "question_hint", "prefix")]
        first = first or [r for r in sampled if r.attempt == 1]
        stats = {
            "hint_fraction": sum(k > 0 for _, k, _ in hints) / len(hints),
            "hint_tokens_mean": sum(len(r.hint_ids) for r in first) / len(first),
            "hint_p": hint_p(self.hints, step, total_steps),
            "completion_tokens_mean": sum(len(r.completion_ids) for r in rows if r.kind != "expert")
            / max(1, sum(r.kind != "expert" for r in rows)),
            "ppo_epoch": 1,
        }
        if self.policy_gradient:  # the SFT preset samples nothing, so it has no reward
            stats["reward_mean"] = nanmean([r.reward for r in first])  # NaN: no reward term scored the row
            stats["correct_rate"] = sum(r.correct for r in first) / len(first)
            if self.rewards is not None:  # each term's mean over the rows it scored (TRL's rewards/<name>/mean)
                for name in [TASK, *self.rewards.names]:
                    stats[f"reward/{name}"] = nanmean([r.parts[name] for r in first if r.parts])
            for k in sorted({k for _, k, _ in hints}):  # by hint length (first attempts)
                ks = [r for r in first if all_hints[r.group][1] == k]
                if ks:
                    stats[f"reward_by_k/{k}"] = nanmean([r.reward for r in ks])
                    stats[f"correct_by_k/{k}"] = sum(r.correct for r in ks) / len(ks)
        if self.viter > 1:
            stats["success_rate"] = len({r.group for r in rows if r.correct}) / len(hints)
            stats["attempts_mean"] = len(rows) / len(first)
        stats.update(self._demo_stats(rows, prompts, step, total_steps, gated))
        return stats

    def _demo_stats(self, rows: list[Row], prompts: range, step: int, total_steps: int, gated: set) -> dict:
        """Metrics of the demonstration methods that are on (docs/methods.md section 8)."""
        stats = {}
        if self.expert_per_group or self.expert_share or self.prefix_rows:
            expert = sum(len(r.completion_ids) for r in rows if r.kind == "expert") \
                + sum(len(r.hint_ids) for r in rows if r.kind == "prefix")
            own = sum(len(r.completion_ids) for r in rows if r.kind != "expert")
            stats["expert/token_share"] = expert / max(1, expert + own)
            stats["expert/row_share"] = sum(r.kind in ("expert", "prefix") for r in rows) / len(rows)
        if self.prefix_rows:
            prefixed = [len(r.hint_ids) for r in rows if r.kind == "prefix"]
            stats["prefix/ratio"] = prefix_ratio(step, total_steps, *self.prefix_schedule)
            stats["prefix/tokens_mean"] = sum(prefixed) / len(prefixed) if prefixed else 0.0
        if self.gate != "none":
            stats["gate/sft_share"] = len(gated & set(prompts)) / len(prompts)
            stats["gate/sft_step"] = 0
        if self.gate == "buffer":
            stats["gate/buffer_size"] = len(self.buffer)
        if self.question_hint_shares:
            stats["question_hint/p"] = question_hint_p(self.question_hint_shares, step, total_steps)
            stats["question_hint/share"] = len({r.group for r in rows if r.kind == "question_hint"}) / len(prompts)
        return stats

    def _samples(self, rows: list[Row], problems, hints, n: int = 2) -> list[dict]:
        """The first rollout of the first n prompts of a mini-batch, decoded (samples.jsonl)."""
        out, seen = [], set()
        decode = self.tokenizer.decode
        for r in rows:
            if r.group in seen or r.attempt != 1 or len(seen) >= n:
                continue
            seen.add(r.group)
            _, k, num = hints[r.group]
            out.append({"prompt": decode(r.prompt_ids), "hint": decode(r.hint_ids),
                        "completion": decode(r.completion_ids), "reward": _number(r.reward), "correct": r.correct,
                        "feedback": r.feedback, "k": k, "num_pieces": num})
            if r.parts:  # each reward term (None: the function did not score the row)
                out[-1]["rewards"] = {name: _number(v) for name, v in r.parts.items()}
        return out


def _number(x: float) -> float | None:
    """NaN as None, so the JSON stays strict."""
    return None if math.isnan(x) else x


def signal_groups(rows: list[Row], n: int) -> list[int]:
    """The groups (of prompts 0..n-1) that dynamic sampling keeps (DAPO): those whose rewards are
    not all equal (NaN, unscored, aside; fewer than two scored rows give no baseline), and those
    with rows that train without the advantage: hint tokens (UFT-hint's NLL, Prefix-RFT's prefix),
    expert rows, gated SFT rows."""
    rewards: dict[int, set] = {g: set() for g in range(n)}
    trains_anyway: set[int] = set()
    for r in rows:
        if r.hint_ids or r.kind in ("expert", "sft"):
            trains_anyway.add(r.group)
        if not math.isnan(r.reward):
            rewards[r.group].add(r.reward)
    return [g for g in range(n) if g in trains_anyway or len(rewards[g]) > 1]

