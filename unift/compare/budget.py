"""The steps estimate of the FLOP-matched protocol: how many optimiser steps a run's budget buys,
so the LR and hint schedules span the run (the trainer stops at the step boundary nearest its
`max_flops` either way, past the estimate if it was short: `RunConfig.max_flops_fill`).

It counts what the trainer counts (`unift.train.flops`; docs/flops.md): 2 FLOPs per weight per
token through a forward pass, the decoder body once per packed token (a group's shared prompt +
hint once), the LM head only where a next token is trained or scored; backward 2x forward for full
fine-tuning; pi_ref's forward when it runs; rollouts as a prefill of each prompt + hint and a
decode of every generated token. Only the token counts are assumed: mean prompt and solution
lengths measured on the training variant (`token_lengths`), the rollout length as a share of
max_new_tokens, and the hint at its schedule's mean share of the solution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

RETRY_FAIL = 0.8
"""Steps estimate with verification iterations: the assumed share of attempts that fail."""
FEEDBACK_TOKENS = 30
"""Steps estimate with verification iterations: tokens of the verifier's feedback in a retry."""


@dataclass
class TokenLengths:
    """Mean token counts of the training variant, for the steps estimate."""

    prompt: float
    """Chat-rendered prompt."""
    solution: float
    """Reference solution + EOS (the SFT target; a full hint)."""


def token_lengths(tokenizer, task, n: int = 32, seed: int = 0) -> TokenLengths:
    from unift.data.tokenize import render_prompt

    problems = task.problems(n, seed=seed, split="train")

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    prompt = sum(count(render_prompt(tokenizer, task.prompt(p))) for p in problems) / n
    solution = sum(count(task.reference_completion(p)) for p in problems) / n + 1  # + EOS
    return TokenLengths(prompt, solution)


def mean_hint_share(hint_spec) -> float:
    """The schedule's expected hint length as a share of the solution, averaged over a run;
    hint_spec: a task source's `rollout.hint` (`unift.config.HintSpec`)."""
    from unift.rollout.hints import hint_p
    from unift.train.run import hint_schedule

    schedule = hint_schedule(hint_spec)
    return sum(hint_p(schedule, t, 100) for t in range(100)) / 100


def reference_share(config, source) -> float:
    """Share of steps that run pi_ref's forward: every step when the objective reads it (a KL
    term: c_kl != 0), else the diagnostics-only pass on every `diagnostics_every`-th step."""
    if source.params.get("c_kl", 0) != 0:
        return 1.0
    return 1.0 / config.diagnostics_every if config.diagnostics else 0.0


def train_flops(model, tokens: float, head_rows: float, ref: float = 0.0, old: float = 0.0) -> float:
    """Forward + backward of the policy over `tokens` packed tokens with `head_rows` scored
    positions, plus `ref` (a share) of pi_ref's forward and `old` of a pi_old forward."""
    forward = model.forward(tokens, head_rows)
    return forward + model.backward(tokens, head_rows) + (ref + old) * forward


def flops_per_step(config, model, lengths: TokenLengths, rollout_fill: float) -> float:
    """Estimated training FLOPs of one optimiser step of a one-task-source config; `model` is a
    `unift.train.flops.ModelFlops` (body and head weights). With B prompts per step, prompt P,
    solution S (EOS included), completions C = rollout_fill x max_new_tokens, hint H = the
    schedule's mean share x S:

    - SFT (no rollouts): B rows of P + S tokens, the head at the S solution positions;
    - RL, per prompt: one packed group of P + H + G C tokens, the head at the G C completion
      positions (and at the H hint positions when the NLL term trains them); generation is a
      prefill of P + H (head at its last position) and a decode of G C tokens, once per rollout
      batch: a batch serves `ppo_epochs` passes, so a step carries 1 / ppo_epochs of it;
      mini-batches after the first of a batch are scored once more by pi_old before the update
      ((m - 1) / (m ppo_epochs) of a forward per step);
    - verification iterations: RETRY_FAIL of the attempts fail and are retried, each retry a row
      of the previous completion, FEEDBACK_TOKENS and a new completion beyond the shared prompt,
      its whole conversation prefilled.
    pi_ref's forward is counted on `reference_share` of the steps."""
    source = config.sources[0]
    r = source.rollout
    B = source.batch_size * config.optim.grad_accum
    P, S = lengths.prompt, lengths.solution
    ref = reference_share(config, source)
    if not r.policy_gradient:
        return B * train_flops(model, P + S, S, ref)
    G, C = r.num_generations, rollout_fill * r.max_new_tokens
    H = mean_hint_share(r.hint) * S
    m, epochs = getattr(r, "mini_batches", 1), r.ppo_epochs
    old = (m - 1) / (m * epochs)
    nll = H if source.params.get("c_nll", 0) != 0 else 0.0
    train = train_flops(model, P + H + G * C, G * C + nll, ref, old)
    generate = model.prefill(P + H, 1) + model.decode(G * C)
    retries = RETRY_FAIL * (r.viter - 1) * G
    if retries:
        train += retries * train_flops(model, 2 * C + FEEDBACK_TOKENS, C, ref, old)
        generate += retries * (model.prefill(P + H + C + FEEDBACK_TOKENS, 1) + model.decode(C))
    return B * (train + generate / epochs)


def estimate_steps(budget: float, per_step: float) -> int:
    """Steps a budget buys, rounded up (a short estimate would end the run before its budget)."""
    return max(1, math.ceil(budget / per_step))
