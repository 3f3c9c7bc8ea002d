"""PPO with a learned critic: GAE advantages, the clipped value loss, explained variance
(docs/methods.md section 9).

Token-level formulation: completion token y_t is an action taken in state s_t = (prompt, hint,
y_<t); the value head reads V(s_t) off the policy's last hidden state at the position that
predicts y_t (the same target-space position as y_t's log-prob); the verifier's reward arrives
at each row's last completion token, and the state after it is terminal (value 0).

Sources:
- GAE: John Schulman, Philipp Moritz, Sergey Levine, Michael Jordan, Pieter Abbeel,
  "High-Dimensional Continuous Control Using Generalized Advantage Estimation",
  arXiv:1506.02438 (2016), eq. 16 and its recursive form.
- PPO: John Schulman et al., "Proximal Policy Optimization Algorithms", arXiv:1707.06347 (2017),
  eq. 9 (clipped surrogate + c_1 value loss - c_2 entropy).
- As run: cleanrl's ppo.py (github.com/vwxyzjn/cleanrl, cleanrl/ppo.py: the GAE loop,
  `returns = advantages + values`, `norm_adv`, `clip_vloss`, explained variance) and the SFT-vs-RL
  study's PPO (Chu et al. 2025, github.com/LeslieTrue/SFTvsRL, rl/trainer/algo/ppo.py and
  storage_tz.py), whose value loss is the same clipped form.

Shapes: token tensors (N, T) in target space; `mask` (N, T), 1 on the tokens that count (the
completion tokens). Values under mask 0 may be anything: they are selected away with
`torch.where`.
"""

import torch

from unift.objectives.aggregate import aggregate


def last_token_rewards(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """An outcome reward per row as a token reward: r_t = r on the row's last masked token, 0
    elsewhere (and 0 everywhere in a row with no masked token).  (N,), (N, T) -> (N, T)"""
    m = mask != 0
    last = m.long().cumsum(1).argmax(1)  # (N,) the first position holding the row's full count
    out = torch.zeros(m.shape, dtype=rewards.dtype, device=rewards.device)
    rows = m.any(1).nonzero(as_tuple=True)[0]
    out[rows, last[rows]] = rewards[rows]
    return out


def gae(
    token_rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over each row's masked tokens, in order (GAE eq. 16, as
    cleanrl's loop computes it):

        delta_t = r_t + gamma V(s_{t+1}) - V(s_t)      V after the row's last token = 0 (terminal)
        A_t     = delta_t + gamma lam A_{t+1}          A after the row's last token = 0
        R_t     = A_t + V(s_t)                         the value target ("returns")

    lam = 1: A_t = sum_{k >= t} gamma^(k - t) r_k - V(s_t), the Monte-Carlo return minus the
    baseline; lam = 0: the one-step TD error delta_t. Unmasked positions are skipped (s_{t+1} is
    the row's next masked position) and hold 0 in both outputs.

    token_rewards, values: (N, T); values are detached here (the rollout's values: the targets
    do not move with the value head). -> (advantages, returns), each (N, T).
    """
    values = values.detach()
    active = mask != 0
    adv = torch.zeros_like(values)
    next_value = values.new_zeros(values.shape[0])  # V(s_{t+1}) of each row, 0 past its end
    next_adv = values.new_zeros(values.shape[0])  # A_{t+1}
    for t in reversed(active.any(0).nonzero(as_tuple=True)[0].tolist()):  # columns with a masked token
        delta = token_rewards[:, t] + gamma * next_value - values[:, t]
        a = delta + gamma * lam * next_adv
        on = active[:, t]
        adv[:, t] = torch.where(on, a, 0.0)
        next_adv = torch.where(on, a, next_adv)
        next_value = torch.where(on, values[:, t], next_value)
    returns = torch.where(active, adv + values, 0.0)
    return adv, returns


def whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / (std + eps) over the masked entries (cleanrl's `norm_adv`, over a
    mini-batch); std is the sample std (n - 1), as torch.std. With fewer than two entries the
    values are only centred. 0 off the mask.  (N, T) -> (N, T)"""
    active = mask != 0
    x = values[active]
    if x.numel() == 0:
        return torch.zeros_like(values)
    centred = x - x.mean()
    if x.numel() > 1:
        centred = centred / (x.std() + eps)
    return torch.zeros_like(values).masked_scatter(active, centred)


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
    aggregation: str = "token_mean",
    normalizer: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss (cleanrl ppo.py with `clip_vloss`; SFTvsRL algo/ppo.py), per token,
    then `aggregate`d like the policy gradient:

        V_clip = V_old + clip(V - V_old, -clip, clip)
        loss_t = 0.5 max((V - R)^2, (V_clip - R)^2)

    The max keeps the value from moving more than `clip` from the rollout's V_old in one batch
    toward its target: where the clipped error is the larger, the gradient is 0. clip <= 0: the
    unclipped 0.5 (V - R)^2.

    values: (N, T) with gradient; old_values, returns: (N, T), detached here. Stats (token means
    over this batch): "loss/value" (the per-token loss), "value/clip_fraction" (share of tokens
    where the clipped error is the larger), "value/mean" (mean V).
    """
    old, target = old_values.detach(), returns.detach()
    unclipped = (values - target) ** 2
    if clip > 0:
        clipped = (old + (values - old).clamp(-clip, clip) - target) ** 2
        per_token = 0.5 * torch.max(unclipped, clipped)
    else:
        clipped = unclipped
        per_token = 0.5 * unclipped
    loss = aggregate(per_token, mask, aggregation, normalizer)
    with torch.no_grad():
        stats = {
            "loss/value": aggregate(per_token, mask, "token_mean"),
            "value/clip_fraction": aggregate((clipped > unclipped).to(values.dtype), mask, "token_mean"),
            "value/mean": aggregate(values, mask, "token_mean"),
        }
    return loss, stats


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - Var[R - V] / Var[R] over the masked tokens (population variances, as cleanrl's
    np.var): 1 for a perfect critic, 0 for one no better than a constant, negative for worse.
    NaN when Var[R] = 0 (cleanrl's np.nan), or with no masked token.  -> scalar, detached"""
    active = mask != 0
    v, r = values.detach()[active].double(), returns.detach()[active].double()
    if r.numel() == 0:
        return torch.tensor(float("nan"))
    var_r = r.var(unbiased=False)
    if var_r == 0:
        return torch.tensor(float("nan"))
    return (1 - (r - v).var(unbiased=False) / var_r).float()
