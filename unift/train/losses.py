"""The objective table: how each named objective reads a source's log-probs.

One entry per objective name: which record kinds it accepts, whether it needs pi_ref, and a
small adapter from the source's tensors to the pure function in `unift.objectives`. The
trainer looks names up here and nowhere else (no `if loss_type == ...` chains).

Row layout of a source's batch: demonstration / binary / score sources have one row per
record; preference sources have 2B rows, the B chosen completions then the B rejected ones.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from unift import objectives as O
from unift.rollout.task_source import RolloutBatch


@dataclass(frozen=True)
class StepCounts:
    """A source's share of the whole optimiser step: its counts summed over all micro-batches and
    processes, divided by the number of processes (whose gradients are averaged). A micro-batch's
    loss divides its sum by these, so the micro-batch losses summed, then averaged over
    processes, are exactly the mean over the global batch (docs/methods.md section 6.6)."""

    rows: float
    """Examples: records, preference pairs, or rollouts."""
    tokens: float
    """Tokens of the token-mean terms: completion tokens (preferences: of the chosen completions)."""
    hint_tokens: float = 0.0
    """Hint tokens (task sources): the hint NLL's token mean."""
    expert_tokens: float = 0.0
    """Expert tokens (task sources: demonstration tokens in completion position, `expert_mask`):
    the mean of the expert loss, and with it the policy-gradient token mean (docs/methods.md 8)."""

    @staticmethod
    def local(x: SourceTensors) -> StepCounts:
        """The micro-batch's own counts (a step of one micro-batch on one process)."""
        rows = x.logps.shape[0] // 2 if x.pairs else x.logps.shape[0]
        r = x.rollout
        hint = 0.0 if r is None else float(r.hint_mask.sum())
        expert = 0.0 if r is None or r.expert_mask is None else float(r.expert_mask.sum())
        return StepCounts(rows, float(_token_mask(x).sum()), hint, expert)


@dataclass
class SourceTensors:
    """What an objective sees of one source's micro-batch. Token tensors are (R, T)."""

    logps: torch.Tensor  # policy per-token log-probs (with grad)
    mask: torch.Tensor  # completion-token mask
    ref_logps: torch.Tensor | None  # pi_ref per-token log-probs (detached), if computed
    targets: torch.Tensor | None  # (B,) binary labels or scores
    beta: float
    counts: StepCounts | None = None  # the optimiser step's counts (None: this micro-batch's own)
    entropy: torch.Tensor | None = None  # (R, T) token entropy of pi, when the objective asks
    rollout: RolloutBatch | None = None  # task sources: advantages, completion/hint masks, pi_old
    pairs: bool = False  # preference rows: B chosen, then B rejected
    values: torch.Tensor | None = None  # (R, T) the value head's V(s_t) (with grad), when the objective asks

    @property
    def step(self) -> StepCounts:
        return self.counts if self.counts is not None else StepCounts.local(self)

    def norm(self, count: float) -> float:
        """A step count as a divisor: a step with none of these tokens has a zero sum, divided by 1."""
        return count if count > 0 else 1.0

    def per_row(self, loss: torch.Tensor) -> torch.Tensor:
        """A mean over this micro-batch's rows -> its exact share of the step's mean over rows."""
        local = self.logps.shape[0] // 2 if self.pairs else self.logps.shape[0]
        return loss * (local / self.step.rows)


def _token_mask(x: SourceTensors) -> torch.Tensor:
    """The tokens of the token-mean terms (what `StepCounts.tokens` counts)."""
    if x.rollout is not None:
        return x.rollout.completion_mask
    return x.mask[: x.mask.shape[0] // 2] if x.pairs else x.mask


@dataclass(frozen=True)
class Objective:
    """An objective and what it needs from a step (the trainer has no per-kind branches)."""

    kinds: tuple[str, ...]
    needs_ref: bool | Callable[[dict], bool]
    """Whether the loss reads pi_ref's log-probs: always, or a function of the source's params."""
    compute: Callable[[SourceTensors, dict], tuple[torch.Tensor, dict]]
    needs_entropy: bool | Callable[[dict], bool] = False
    """Whether the loss reads pi's token entropy (an (N, V) softmax): always, or from the params."""
    needs_values: bool | Callable[[dict], bool] = False
    """Whether the loss reads a value head's per-token values V(s_t) (PPO's critic): always, or
    from the params. The run then trains a value head on the policy (`unift.models.ValueHead`)."""
    exact_kl: bool = True
    """Whether a diagnostics reference pass also keeps pi_ref's (N, V) log-softmax for the exact
    KL(pi || pi_ref) metric `kl/ref` (RL batches log their objective's k3 estimate instead, at no
    memory cost)."""
    params: dict[str, Any] = field(default_factory=dict)
    """The `params:` it takes, with their defaults (whose types the values must have)."""
    choices: dict[str, tuple] = field(default_factory=dict)
    """Params that take one of a few values."""
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Numeric params and their closed range [low, high]."""

    def wants_ref(self, params: dict) -> bool:
        """Whether a step must run pi_ref's forward pass for this loss with these params."""
        return self.needs_ref(params) if callable(self.needs_ref) else self.needs_ref

    def wants_entropy(self, params: dict) -> bool:
        return self.needs_entropy(params) if callable(self.needs_entropy) else self.needs_entropy

    def wants_values(self, params: dict) -> bool:
        return self.needs_values(params) if callable(self.needs_values) else self.needs_values


def _seq(x: SourceTensors):
    """Sequence log-probs (R,) of policy and reference."""
    policy = O.sequence_logps(x.logps, x.mask)
    ref = O.sequence_logps(x.ref_logps, x.mask)
    return policy, ref


def _pairs(x: SourceTensors, averaged: bool = False):
    """(policy_chosen, policy_rejected, ref_chosen, ref_rejected), each (B,)."""
    reduce = O.average_logps if averaged else O.sequence_logps
    policy, ref = reduce(x.logps, x.mask), reduce(x.ref_logps, x.mask)
    b = policy.shape[0] // 2
    return policy[:b], policy[b:], ref[:b], ref[b:]


def _sft(x: SourceTensors, p: dict):
    reduction = p.get("reduction", "token_mean")
    normalizer = x.norm(x.step.tokens if reduction == "token_mean" else x.step.rows)
    return O.sft_nll(x.logps, x.mask, normalizer=normalizer, **p)


def _per_row(compute):
    """A sequence-level objective (a mean over rows or pairs), made exact over the step."""
    def exact(x: SourceTensors, p: dict):
        loss, stats = compute(x, p)
        return x.per_row(loss), stats

    return exact


def _dpo(loss_type: str):
    """A DPO-family loss over pairs, plus `sft_weight` x the token-mean NLL of the chosen
    completions (TRL's "sft" term; the terms of `unift.objectives.dpo_with_sft`)."""
    def compute(x: SourceTensors, p: dict):
        p = dict(p)
        sft_weight = p.pop("sft_weight", 0.0)
        pairs = _pairs(x, averaged=loss_type == "ipo")  # TRL's IPO uses length-averaged log-probs
        loss, stats = O.dpo_loss(*pairs, beta=x.beta, loss_type=loss_type, **p)
        loss = x.per_row(loss)
        if sft_weight:
            b = x.logps.shape[0] // 2
            nll, nll_stats = O.sft_nll(x.logps[:b], x.mask[:b], normalizer=x.norm(x.step.tokens))
            loss = loss + sft_weight * nll
            stats = {**stats, "nll": nll_stats["nll"]}
        return loss, stats

    return compute


def _grpo(x: SourceTensors, p: dict):
    """GRPO-family policy gradient with UFT-hint's hint NLL (`ufthint_loss`), and the expert
    tokens' loss of the methods that mix demonstrations into RL (`expert_loss`, section 8).
    Params: epsilon_low, epsilon_high, c_ent, c_nll, c_kl, kl_estimator, aggregation (token_mean =
    DAPO over the step's completion tokens, sequence_mean = GRPO over its rollouts, constant = Dr.
    GRPO over rollouts x max_new_tokens); expert_loss and its params (`_EXPERT_PARAMS`);
    adv_estimator gae: PPO with a learned critic and its params (`_PPO_PARAMS`, `_critic`)."""
    r, step = x.rollout, x.step
    p = dict(p)
    expert = {k: p.pop(k, v) for k, v in _EXPERT_PARAMS.items()}
    critic = {k: p.pop(k, v) for k, v in _PPO_PARAMS.items()}
    kind = expert["expert_loss"]
    aggregation = p.get("aggregation", "token_mean")
    # expert tokens trained by a policy gradient share its token mean (LUFFY: one mean over all)
    pg_tokens = step.tokens + (step.expert_tokens if kind in ("shaped", "is") else 0.0)
    normalizer = x.norm({"token_mean": pg_tokens, "constant": step.rows * r.max_new_tokens}.get(
        aggregation, step.rows))
    advantages, value_term, value_stats = r.advantages, 0.0, {}
    if critic["adv_estimator"] == "gae":
        advantages, value_term, value_stats = _critic(x, critic, aggregation, normalizer)
    loss, stats = O.ufthint_loss(x.logps, r.old_logps, x.ref_logps, advantages, r.completion_mask,
                                 r.hint_mask, x.entropy, normalizer=normalizer,
                                 hint_normalizer=step.hint_tokens or None, **p)
    loss = loss + value_term
    stats.update(value_stats)
    stats["nll_tokens"] = r.hint_mask.sum().float()
    if kind != "none" and r.expert_mask is not None:
        loss, expert_stats = _expert_term(x, loss, kind, expert, normalizer)
        stats.update(expert_stats)
    full = r.full_hint
    if full.any():  # does the model end after the whole solution? p(EOS)
        last = r.hint_mask.float().cumsum(1).argmax(1)  # each row's last hint target position
        eos = x.logps.detach()[torch.arange(len(last), device=last.device), last].exp()
        stats["full_hint_eos_p"] = eos[full].mean()
    return loss, stats


def _critic(x: SourceTensors, p: dict, aggregation: str, normalizer: float):
    """PPO's learned critic (docs/methods.md section 9) -> (per-token advantages, c_vf x value
    loss, stats). GAE over the completion tokens from the reward at each row's last one and the
    rollout's values V_old (the value head before this rollout's updates, as pi_old), whitened
    over this micro-batch's completion tokens (`norm_adv`, cleanrl's per-mini-batch whitening);
    the clipped value loss to the returns A + V_old, in the policy gradient's aggregation."""
    r = x.rollout
    if x.values is None or r.old_values is None:
        raise ValueError("adv_estimator gae needs the value head's values: train_step(value_head=...)")
    mask, old = r.completion_mask, r.old_values
    rewards = O.last_token_rewards(r.rewards.to(old.dtype), mask)
    advantages, returns = O.gae(rewards, old, mask, p["gamma"], p["gae_lambda"])
    loss, stats = O.value_loss(x.values, old, returns, mask, p["vf_clip"], aggregation, normalizer)
    stats["value/explained_variance"] = O.explained_variance(old, returns, mask)
    if p["norm_adv"]:
        advantages = O.whiten(advantages, mask)
    return advantages, p["c_vf"] * loss, stats


def _expert_term(x: SourceTensors, loss: torch.Tensor, kind: str, p: dict, normalizer: float):
    """Adds the expert tokens' loss to the GRPO loss (`unift.objectives.mixed`):
    shaped / is: a policy gradient with behaviour probability 1 in the same token mean, on the
    top `expert_top_entropy` share of each row's expert tokens (LUFFY, Prefix-RFT);
    sft / sft_phi: (1 - mu) GRPO + mu SFT, a token mean over the step's expert tokens (CHORD)."""
    r = x.rollout
    mask = r.expert_mask
    if kind in ("shaped", "is"):
        if p["expert_top_entropy"] < 1:
            mask = O.top_entropy_mask(x.entropy, mask, p["expert_top_entropy"])
        term, stats = O.off_policy_pg(x.logps, r.advantages, mask, kind, p["expert_gamma"], normalizer)
        stats["expert/kept"] = mask.sum() / r.expert_mask.sum().clamp(min=1)
        return loss + term, stats
    mu = O.cosine_decay(r.step, p["mu_start"], p["mu_end"], _steps(p["mu_decay"], r.total_steps),
                        _steps(p["mu_warmup"], r.total_steps))
    term, stats = O.phi_sft(x.logps, mask, kind == "sft_phi", x.norm(x.step.expert_tokens))
    stats["mu"] = torch.tensor(mu)
    return (1 - mu) * loss + mu * term, stats


def _steps(value: float, total_steps: int) -> int:
    """A schedule length param: <= 1 a fraction of the run's steps, > 1 a count (as T_hint)."""
    return round(value * total_steps) if value <= 1 else int(value)


_GRPO_PARAMS = {name: p.default for name, p in inspect.signature(O.ufthint_loss).parameters.items()
                if name in ("epsilon_low", "epsilon_high", "c_ent", "c_nll", "c_kl", "kl_estimator", "aggregation")}
_EXPERT_PARAMS = {
    "expert_loss": "none",  # O.EXPERT_LOSSES: none | shaped (LUFFY) | is (Prefix-RFT) | sft, sft_phi (CHORD)
    "expert_gamma": 0.1,  # LUFFY's shaping f(p) = p / (p + gamma)
    "expert_top_entropy": 1.0,  # share of each row's expert tokens, highest entropy first, with gradient
    "mu_start": 0.0,  # CHORD: weight of the SFT term, from mu_start (after a linear warm-up) ...
    "mu_end": 0.0,  # ... to mu_end by a half cosine
    "mu_warmup": 0.0,  # warm-up steps (<= 1: a fraction of the run)
    "mu_decay": 0.0,  # decay steps (<= 1: a fraction of the run)
}
_PPO_PARAMS = {
    "adv_estimator": "group",  # group: the rollout's group-relative advantage (GRPO) | gae: a value head (PPO)
    "gamma": 1.0,  # GAE's discount over completion tokens
    "gae_lambda": 0.95,  # GAE's lambda (1: Monte-Carlo return minus V; 0: one-step TD error)
    "c_vf": 0.5,  # value-loss coefficient (cleanrl's vf_coef)
    "vf_clip": 0.2,  # the value's clip range around V_old (cleanrl's clip_coef); 0: unclipped
    "norm_adv": True,  # whiten the GAE advantages over the micro-batch's completion tokens (cleanrl)
}
_GRPO_PARAMS.update(_EXPERT_PARAMS)
_GRPO_PARAMS.update(_PPO_PARAMS)
_C_KL, _C_ENT = _GRPO_PARAMS["c_kl"], _GRPO_PARAMS["c_ent"]
_DPO = {"sft_weight": 0.0}

OBJECTIVES: dict[str, Objective] = {
    # pi_ref only for the KL term: the SFT preset (c_kl 0) skips the reference forward
    "grpo": Objective(("task",), lambda p: p.get("c_kl", _C_KL) != 0, _grpo,
                      needs_entropy=lambda p: p.get("c_ent", _C_ENT) != 0 or p.get("expert_top_entropy", 1.0) < 1,
                      needs_values=lambda p: p.get("adv_estimator") == "gae",
                      exact_kl=False, params=_GRPO_PARAMS,
                      choices={"kl_estimator": tuple(O.KL_ESTIMATORS), "aggregation": O.AGGREGATIONS,
                               "expert_loss": O.EXPERT_LOSSES, "adv_estimator": ("group", "gae")},
                      bounds={"gamma": (0.0, 1.0), "gae_lambda": (0.0, 1.0), "c_vf": (0.0, math.inf),
                              "vf_clip": (0.0, math.inf)}),
    "sft": Objective(("demonstration",), False, _sft, params={"reduction": "token_mean"},
                     choices={"reduction": ("token_mean", "sequence_sum")}),
    "uft-implicit-mse": Objective(("demonstration",), True,
                                  _per_row(lambda x, p: O.uft_implicit_mse(*_seq(x), x.beta))),
    "uft-implicit-bce": Objective(("demonstration",), True,
                                  _per_row(lambda x, p: O.uft_implicit_bce(*_seq(x), x.beta))),
    "dpo-sigmoid": Objective(("preference",), True, _dpo("sigmoid"), params={**_DPO, "label_smoothing": 0.0}),
    "dpo-ipo": Objective(("preference",), True, _dpo("ipo"), params=_DPO),
    "dpo-hinge": Objective(("preference",), True, _dpo("hinge"), params=_DPO),
    "una-pairwise": Objective(("preference",), True, _per_row(lambda x, p: O.una_pairwise(*_pairs(x), x.beta))),
    "una-binary-mse": Objective(("binary",), True,
                                _per_row(lambda x, p: O.una_binary(*_seq(x), x.targets, x.beta, "mse"))),
    "una-binary-bce": Objective(("binary",), True,
                                _per_row(lambda x, p: O.una_binary(*_seq(x), x.targets, x.beta, "bce"))),
    "una-score-mse": Objective(("score",), True, _per_row(lambda x, p: O.una_score(*_seq(x), x.targets, x.beta))),
}
# Names TRL users know.
OBJECTIVES["dpo"] = OBJECTIVES["dpo-sigmoid"]


def check_params(name: str, params: dict, where: str) -> None:
    """Raise ValueError for a param objective `name` does not take ("did you mean ...?") or a
    value of the wrong type or outside its choices; `where` names the config key."""
    objective = OBJECTIVES[name]
    for key, value in params.items():
        if key not in objective.params:
            close = difflib.get_close_matches(key, list(objective.params), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(sorted(objective.params)) or "none"
            raise ValueError(f"{where}.{key}: objective {name!r} takes no param {key!r}{hint} (its params: {known})")
        default = objective.params[key]
        number = isinstance(default, float) and isinstance(value, int | float) and not isinstance(value, bool)
        if not number and not isinstance(value, type(default)):
            raise ValueError(f"{where}.{key}: expected {type(default).__name__}, got {value!r}")
        if key in objective.choices and value not in objective.choices[key]:
            raise ValueError(f"{where}.{key}: {value!r} is not one of {', '.join(objective.choices[key])}")
        low, high = objective.bounds.get(key, (-math.inf, math.inf))
        if number and not low <= value <= high:
            raise ValueError(f"{where}.{key}: {value!r} is not in [{low}, {high}]")


def get(name: str, kind: str) -> Objective:
    if name not in OBJECTIVES:
        raise KeyError(f"unknown objective {name!r}; known: {sorted(OBJECTIVES)}")
    objective = OBJECTIVES[name]
    if kind not in objective.kinds:
        raise ValueError(f"objective {name!r} takes {objective.kinds} records, not {kind!r}")
    return objective


def diagnostics(x: SourceTensors, kind: str) -> dict[str, torch.Tensor]:
    """Implicit-reward diagnostics r = beta * (log pi(y|x) - log pi_ref(y|x)) for any source,
    whatever its objective (so plain SFT shows its implicit reward too)."""
    if x.ref_logps is None:
        return {}
    r = O.implicit_reward(*_seq(x), x.beta)  # (R,)
    if x.pairs:
        b = r.shape[0] // 2
        return O.pair_stats(r[:b], r[b:])
    return O.reward_stats(r, x.targets if kind == "binary" else None, predicted=False)
