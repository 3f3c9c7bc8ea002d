"""unift: supervised fine-tuning, preference/feedback alignment and reinforcement fine-tuning
in one training stage.

Data flow (one folder per stage):
    records (unift.data) -> mixture (unift.data.mixture) -> rollout for tasks (unift.rollout)
    -> log-probs (unift.train.logprobs) -> objectives (unift.objectives)
    -> optimiser step (unift.train.step) -> metrics / checkpoint (unift.train)
"""

__version__ = "0.1.0"
