"""Theory simulator: RFT needs ~B^H leaf visits on a search tree, UFT a polynomial in H.

Liu, Farina, Ozdaglar (2025), "UFT: Unifying Supervised and Reinforcement Fine-Tuning", theory
section; described in docs/methods.md section 1.4.
Stages, one module each:
    tree.py      the task (deterministic tree, leaf rewards) and one iteration's stages:
                 rollout -> group_advantages -> mirror_update -> pass_at_1
    simulate.py  hint schedules, train-until-solved loop, sweep over (B, H, seed), fits
    cli.py       `unift theory ...`: table, JSON, PNG
"""

from unift.theory.cli import main

__all__ = ["main"]
