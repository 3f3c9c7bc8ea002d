"""Training compute as computed: FLOPs of the matrix products a step actually runs.

Convention (docs/flops.md has the derivation and what it leaves out):

- A forward pass costs 2 FLOPs per weight per token that goes through it. The decoder body
  (every weight except the embeddings and the LM head) sees each *packed* token once: rows
  that share a prompt (a GRPO group, a DPO pair) run that prompt once (`unift.train.logprobs`).
  The LM head (vocabulary x hidden) runs only at the positions whose next token is trained or
  scored ("head rows"), not at prompt positions.
- A backward pass costs 2x its forward when every weight trains (input gradients + weight
  gradients), 1x plus the trainable share when only some do (LoRA: input gradients through the
  frozen base, weight gradients for the adapters only).
- The reference model's forward, when a step runs it, costs a forward pass.
- Rollouts: the prefill runs each distinct prompt (prompt + hint) once, with the head at its last
  position; each generated token then costs a forward of one token through body and head.
- Not counted: attention scores (2 x 2 x layers x hidden x context per token: ~3% at this
  project's 100-300-token sequences), norms, activations, softmax/log-softmax, the optimiser,
  and recomputation by gradient checkpointing (a memory setting, not part of the algorithm).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelFlops:
    """Weight counts of a causal LM as far as its products go."""

    body: int
    """Weights used once per token in the decoder: all but the input embedding and the LM head."""
    head: int
    """LM-head weights (vocabulary x hidden), tied to the input embedding or not."""
    trainable: float = 1.0
    """Share of the weights that get gradients (1 for full fine-tuning; LoRA: its adapters)."""

    @classmethod
    def from_model(cls, model) -> ModelFlops:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        embed = base.get_input_embeddings().weight
        head = base.get_output_embeddings().weight
        seen: set[int] = set()
        total = trainable = 0
        for p in model.parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            total += p.numel()
            trainable += p.numel() if p.requires_grad else 0
        body = total - embed.numel() - (0 if head is embed else head.numel())
        return cls(body, head.numel(), trainable / total if total else 1.0)

    @property
    def total(self) -> int:
        """N as in 2N per token: body + head."""
        return self.body + self.head

    def forward(self, tokens: float, head_rows: float) -> float:
        """2 (body x tokens + head x head_rows)."""
        return 2.0 * (self.body * tokens + self.head * head_rows)

    def backward(self, tokens: float, head_rows: float) -> float:
        """Input gradients (one forward's worth) + weight gradients (the trainable share of one)."""
        return (1.0 + self.trainable) * self.forward(tokens, head_rows)

    def prefill(self, tokens: float, rows: float) -> float:
        """Distinct prompts of `tokens` tokens in all, the head at each one's last position."""
        return self.forward(tokens, rows)

    def decode(self, generated: float) -> float:
        """One token through body and head per generated token."""
        return self.forward(generated, generated)
