"""Demonstration losses that keep pi_ref in the gradient (implicit-reward SFT).

A demonstration y for prompt x is read as feedback with the best label: score 1, thumbs up.
With x = log pi(y|x) - log pi_ref(y|x) (sequence log-probs, summed over completion tokens)
and the implicit reward r = beta * x:

    MSE:  L = (sigma(r) - 1)^2        dL/dx = -2 beta sigma(r) (1 - sigma(r))^2
    BCE:  L = -log sigma(r)           dL/dx = -beta (1 - sigma(r))
    NLL:  L = -log pi(y|x)            dL/d log pi(y|x) = -1

All three raise log pi(y|x) (dL/dx < 0). NLL pushes with the same force however far the
model has already moved: nothing in it refers to pi_ref, and the implicit-reward reading of
SFT says why (its KL(pi || pi_ref) term is constant in the policy; Wang et al. 2025, "Implicit
Reward as the Bridge", docs/methods.md section 4). MSE and BCE saturate: once the demonstration is
a few 1/beta nats more likely under pi than under pi_ref, sigma(r) -> 1 and the gradient
-> 0, so pi_ref keeps regularising. Caveat: the MSE gradient also vanishes when r is very
negative (sigma(r) -> 0); BCE's does not (it tends to -beta). With a small beta and a policy
that starts at pi_ref, r starts at 0, where both are at work.

Sources and what is ours:
- MSE: Wang et al., "UFT: Unifying Fine-Tuning of SFT and RLHF/DPO/UNA through a Generalized
  Implicit Reward Function" (2024): demonstrations as UNA feedback with score 1, MSE
  (docs/methods.md section 3).
- BCE: ours. It is UNA's binary BCE (Wang et al. 2024, UNA) with label 1, applied to
  demonstrations; offered as an SFT objective that keeps pi_ref in the gradient, in the spirit
  of remedy (b) of the bridge paper, whose own per-token formulas we did not have.
- `token_implicit_rewards`: per-token terms of r (the bridge paper's "logits as Q-functions"
  reading, section 4(c)); a reporting helper, not a loss.
"""

import torch
import torch.nn.functional as F

from unift.objectives.aggregate import apply_mask
from unift.objectives.implicit import implicit_reward, reward_stats


def uft_implicit_mse(
    policy: torch.Tensor, ref: torch.Tensor, beta: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """loss = mean (sigma(beta * (policy - ref)) - 1)^2 on sequence log-probs (B,).

    UFT (Wang et al. 2024), demonstrations as score-1 feedback. Saturates as the implicit reward
    grows (see the module docstring). Stats: "rewards/implicit" (mean r), "score/pred".
    """
    r = implicit_reward(policy, ref, beta)  # (B,)
    return ((torch.sigmoid(r) - 1.0) ** 2).mean(), reward_stats(r)


def uft_implicit_bce(
    policy: torch.Tensor, ref: torch.Tensor, beta: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """loss = mean -log sigma(beta * (policy - ref)) on sequence log-probs (B,).

    Ours: UNA's binary BCE with label 1 applied to demonstrations. Gradient -beta (1 - sigma(r))
    per unit log-ratio: as strong as beta-scaled NLL while r << 0, vanishing as r grows.
    Stats: "rewards/implicit" (mean r), "score/pred".
    """
    r = implicit_reward(policy, ref, beta)  # (B,)
    return -F.logsigmoid(r).mean(), reward_stats(r)


def token_implicit_rewards(
    token_logps: torch.Tensor, ref_token_logps: torch.Tensor, mask: torch.Tensor, beta: float
) -> torch.Tensor:
    """Per-token implicit rewards beta * (log pi(y_t|.) - log pi_ref(y_t|.)), 0 off the mask.

    (B, T) -> (B, T), detached; their sum over t is the sequence implicit reward r.
    """
    values, _ = apply_mask((token_logps - ref_token_logps).detach(), mask)
    return beta * values
