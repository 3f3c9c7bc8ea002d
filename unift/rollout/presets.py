"""Algorithms as presets of one trainer (docs/methods.md section 1.3): each is a few config lines
on a task source, filling in what the source's own config leaves at its defaults (the config
wins; `SourceConfig.__post_init__` applies them, from YAML and from Python alike).

    sources:
      - {kind: task, task: countdown, objective: grpo, preset: uft}

- rft:        GRPO, never a hint.
- uft:        cosine-binomial hint schedule + NLL on the hint tokens (UFT-hint).
- rft-cosine: the UFT schedule without the NLL term (the paper's ablation).
- r3:         hint length uniform over the cut points all run long, no NLL term.
- stage:      hint length steps down in equal stages to 0 at T_hint, with UFT's NLL term (as the
              reference code's stage baseline keeps it).
- sft:        the whole reference solution, NLL only, no rollouts.
- sft-rft is two runs (SFT, then RFT from its output, splitting the budget): `unift compare`.
- ppo:        PPO with a learned critic (docs/methods.md section 9): a value head on the policy,
              GAE(gamma 1, lambda 0.95) over completion tokens from the reward at the last one,
              advantages whitened per mini-batch, cleanrl's clipped value loss (c_vf 0.5, clip
              0.2); KL and entropy as `rft`, so the two differ only in the advantage.

Methods that mix demonstrations into RL in one stage (docs/methods.md section 8), each with the
settings of its official scripts where unift has them (no KL where they run none):
- luffy:      one expert trace per group (G - 1 own rollouts), its tokens trained by the shaped
              policy gradient -A pi / (pi + 0.1); no std division, Dr. GRPO's constant normaliser.
- chord:      CHORD-mu: 20% of the rows are expert traces trained by NLL with weight mu, decaying
              from 0.9 to 0.05 over the first half of the run; (1 - mu) GRPO on the rollouts.
- chord-phi:  CHORD-phi: the same rows, NLL weighted per token by phi = p (1 - p), mu fixed at 0.1.
- hpt:        a prompt none of whose G rollouts is correct trains by NLL on its solution instead
              of RL (HPT's switch, gate 0), otherwise LUFFY's RL settings.
- superrl:    the same switch with GRPO's defaults (token mean, std division, the rft preset's KL).
- relift:     prompts with no correct rollout fill a buffer; every 8 of them make one SFT step.
- prefix-rft: one rollout per group continues a cosine-decayed prefix of the solution; prefix
              tokens trained off-policy (-A pi) on their top 20% highest-entropy tokens.
- questa:     hard problems (no correct rollout) are sampled again with 50%, then 25%, of the
              solution in the question.
"""

from __future__ import annotations

import copy

# The policy-gradient side shared by every RL preset: PPO-clip, DAPO token mean, k3 KL and an
# entropy bonus with the reference code's 0.001 coefficients.
_RL = {"c_kl": 0.001, "c_ent": 0.001}
# LUFFY's and HPT's scripts (the verl fork both share): no KL, entropy 0.001, no std division in
# the advantage, the policy-gradient sum divided by a constant length (loss_remove_token_mean).
_NO_KL = {"c_kl": 0.0, "c_ent": 0.001, "c_nll": 0.0}
_LUFFY_RL = {"params": {**_NO_KL, "aggregation": "constant"}, "rollout": {"scale_rewards": "none"}}
# cleanrl's ppo.py (norm_adv, clip_vloss, vf_coef 0.5, clip_coef 0.2), per token with gamma 1
_PPO = {"adv_estimator": "gae", "gamma": 1.0, "gae_lambda": 0.95, "c_vf": 0.5, "vf_clip": 0.2, "norm_adv": True}

PRESETS: dict[str, dict] = {
    "rft": {"rollout": {"hint": {"schedule": "none"}}, "params": {**_RL, "c_nll": 0.0}},
    "uft": {"rollout": {"hint": {"schedule": "cosine"}}, "params": {**_RL, "c_nll": 0.001}},
    "rft-cosine": {"rollout": {"hint": {"schedule": "cosine"}}, "params": {**_RL, "c_nll": 0.0}},
    "r3": {"rollout": {"hint": {"schedule": "uniform"}}, "params": {**_RL, "c_nll": 0.0}},
    "stage": {"rollout": {"hint": {"schedule": "stage"}}, "params": {**_RL, "c_nll": 0.001}},
    "sft": {
        "rollout": {"hint": {"schedule": "full"}, "policy_gradient": False},
        "params": {"c_nll": 1.0, "c_kl": 0.0, "c_ent": 0.0},
    },
    "ppo": {"rollout": {"hint": {"schedule": "none"}}, "params": {**_RL, "c_nll": 0.0, **_PPO}},
    # -- demonstrations mixed into RL (docs/methods.md section 8) --
    "luffy": {
        "rollout": {**_LUFFY_RL["rollout"], "expert": {"per_group": 1}},
        "params": {**_LUFFY_RL["params"], "expert_loss": "shaped", "expert_gamma": 0.1},
    },
    "chord": {
        "rollout": {"expert": {"share": 0.2}},
        "params": {"c_kl": 0.0, "c_ent": 0.0, "c_nll": 0.0, "expert_loss": "sft", "mu_start": 0.9,
                   "mu_end": 0.05, "mu_decay": 0.5},
    },
    "chord-phi": {
        "rollout": {"expert": {"share": 0.2}},
        "params": {"c_kl": 0.0, "c_ent": 0.0, "c_nll": 0.0, "expert_loss": "sft_phi", "mu_start": 0.1,
                   "mu_end": 0.1},
    },
    "hpt": {
        "rollout": {**_LUFFY_RL["rollout"], "gate": {"mode": "switch", "max_correct": 0}},
        "params": {**_LUFFY_RL["params"], "c_nll": 1.0},
    },
    "superrl": {
        "rollout": {"gate": {"mode": "switch", "max_correct": 0}},
        "params": {**_RL, "c_nll": 1.0},
    },
    "relift": {
        "rollout": {**_LUFFY_RL["rollout"], "gate": {"mode": "buffer", "max_correct": 0, "buffer_size": 8}},
        "params": {**_LUFFY_RL["params"], "c_nll": 1.0},
    },
    "prefix-rft": {
        "rollout": {"prefix": {"rows": 1, "ratio_start": 0.8, "ratio_end": 0.0, "T": 1.0}},
        "params": {**_NO_KL, "expert_loss": "is", "expert_top_entropy": 0.2},
    },
    "questa": {
        "rollout": {"question_hint": {"p": [0.5, 0.25], "hard_max_correct": 0}},
        "params": {**_RL, "c_nll": 0.0},
    },
}


def merge(base: dict, top: dict) -> dict:
    """Deep merge: values of `top` win; nested mappings merge."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
