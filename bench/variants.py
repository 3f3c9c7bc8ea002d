"""unift variants that `bench/run.py` measures side by side, to show what each speed-up buys.

    default   unift as `unift train` runs it: fp32 weights, bf16 autocast (precision=bf16),
              reference pass for the KL / implicit-reward diagnostics on every source
    noref     the same without the reference pass where the objective does not need it
              (train_step's diagnostics_ref=False; SFT only differs)
    bf16w     bf16 weights and activations, fp32 master weights in the optimiser (a prototype
              here: `MasterAdamW`); no autocast casts
    unpacked  the default with the previous log-prob path (padded rows, full fp32 log-softmax),
              kept in `baseline_logprobs.py` to measure the packing / fused log-prob change
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


class MasterAdamW(torch.optim.AdamW):
    """AdamW on fp32 master copies of bf16 model parameters.

    The model runs and back-propagates in bf16; `step` moves the bf16 gradients into the fp32
    masters, updates them, and writes the rounded weights back. `zero_grad` clears both."""

    def __init__(self, params, **kwargs):
        self.model_params = list(params)
        masters = [p.detach().float().clone().requires_grad_(True) for p in self.model_params]
        super().__init__(masters, **kwargs)

    @torch.no_grad()
    def step(self, closure=None):
        masters = self.param_groups[0]["params"]
        for p, m in zip(self.model_params, masters, strict=True):
            m.grad = None if p.grad is None else p.grad.float()
        loss = super().step(closure)
        torch._foreach_copy_([p for p in self.model_params], masters)
        return loss

    def zero_grad(self, set_to_none: bool = True):
        super().zero_grad(set_to_none)
        for p in self.model_params:
            p.grad = None


@dataclass
class Patch:
    precision: str
    describe: str
    optimizer_cls: type = torch.optim.AdamW
    step_kwargs: dict = field(default_factory=dict)

    def optimizer(self, params, lr: float):
        return self.optimizer_cls(params, lr=lr, fused=True)  # as unift.train.run.adamw


def apply(name: str, policy, precision: str = "bf16") -> Patch:
    """Prepare `policy` (in place) for variant `name`; returns how to drive train_step."""
    auto = "fp32 weights, bf16 autocast" if precision == "bf16" else "fp32"
    if name == "default":
        return Patch(precision, auto)
    if name == "noref":
        return Patch(precision, auto + ", no reference diagnostics", step_kwargs={"diagnostics_ref": False})
    if name == "bf16w":
        policy.to(torch.bfloat16)
        return Patch("fp32", "bf16 weights + fp32 master AdamW, no autocast", MasterAdamW)
    if name == "bf16w-noref":
        policy.to(torch.bfloat16)
        return Patch("fp32", "bf16 weights + fp32 master AdamW, no reference diagnostics", MasterAdamW,
                     {"diagnostics_ref": False})
    if name == "unpacked":
        import baseline_logprobs

        from unift.train import step

        step.token_logps = baseline_logprobs.token_logps
        return Patch(precision, auto + ", previous log-prob path (padded, full log-softmax)")
    raise ValueError(f"unknown variant {name!r}")
