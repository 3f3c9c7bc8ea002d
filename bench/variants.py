"""unift variants that `bench/run.py` measures side by side, to show what each speed-up buys.

    default   unift as `unift train` runs it at the job's precision (unift's default: auto, bf16
              autocast of fp32 weights or fp32, whichever measured faster on this CPU;
              bf16-master: bf16 weights with fp32 master weights), the
              diagnostics' reference pass where the objective does not need pi_ref (SFT) on the
              first, every `diagnostics_every`-th and the last step (`run.diagnostics_due`, with
              the worker's warm-up + timed steps as the run's steps)
    noref     never that reference pass (`diagnostics: false`; SFT only differs)
    diag-every-step
              that reference pass on every step (`diagnostics_every: 1`)
    malloc    the default with glibc's own malloc settings (freed memory goes back to the kernel;
              `unift.memory.retain_freed_memory` not called)
    unpacked  the default with the previous log-prob path (padded rows, full fp32 log-softmax),
              kept in `baseline_logprobs.py` to measure the packing / fused log-prob change
"""

from __future__ import annotations

from dataclasses import dataclass, field

from unift.memory import retain_freed_memory
from unift.precision import PRECISIONS
from unift.train.optim import adamw


@dataclass
class Patch:
    precision: str
    describe: str
    settings: dict = field(default_factory=dict)  # RunConfig fields the variant changes

    def optimizer(self, params, lr: float):
        return adamw(params, precision=self.precision, lr=lr)  # as `unift train`


def apply(name: str, policy, precision: str) -> Patch:
    """Prepare `policy` (in place) for variant `name` at a resolved precision (not auto);
    returns how to drive train_step."""
    if name != "malloc":
        retain_freed_memory()  # as `unift train` does
    auto = PRECISIONS[precision]
    if name == "default":
        return Patch(precision, auto)
    if name == "malloc":
        return Patch(precision, auto + ", glibc malloc returning freed memory to the kernel")
    if name == "noref":
        return Patch(precision, auto + ", no reference diagnostics", settings={"diagnostics": False})
    if name == "diag-every-step":
        return Patch(precision, auto + ", reference diagnostics every step",
                     settings={"diagnostics_every": 1})
    if name == "unpacked":
        import baseline_logprobs

        from unift.train import step

        step.token_logps = baseline_logprobs.token_logps
        return Patch(precision, auto + ", previous log-prob path (padded, full log-softmax)")
    raise ValueError(f"unknown variant {name!r}")
