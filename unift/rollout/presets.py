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
"""

from __future__ import annotations

import copy

# The policy-gradient side shared by every RL preset: PPO-clip, DAPO token mean, k3 KL and an
# entropy bonus with the reference code's 0.001 coefficients.
_RL = {"c_kl": 0.001, "c_ent": 0.001}

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
