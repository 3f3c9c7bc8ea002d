"""Devices and data parallelism through accelerate.

`init(device)` builds accelerate's `Accelerator`, which picks this process's device (`device:
auto`: a CUDA GPU where torch sees one, else MPS, else the CPU; under `accelerate launch`, the
process's own GPU) and joins the processes `accelerate launch` (or torchrun) started: gloo on
CPUs, NCCL on GPUs. The trainer moves the policy, pi_ref, the value head, the batches and the
rollout engine to `Dist.device`.

Each process takes its shard of the same global batch. The gradients are all-reduced here,
after backward, not by accelerate's DDP wrapper (`accelerator.prepare`), for two reasons:
- unift's forward pass does not go through the model's `forward`: `unift.train.logprobs` calls
  the decoder and the LM head separately (the head only where a loss needs it), and the rollout
  engine copies the weights into its own decoder; DDP's and FSDP's hooks sit on `forward`;
- the numbers stay those of one process on the global batch: every objective divides by the
  step's counts summed over micro-batches and processes (`unift.train.step.step_counts`, which
  hands each process the global count / world), so averaging the gradients over processes gives
  exactly the single-process gradient (tests/train/test_exactness.py).
FSDP, DeepSpeed and Megatron-LM accelerate configs are therefore refused (`init`): they would
shard what this trainer reads whole.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import torch

from unift.config import DEVICES, ConfigError, UniftWarning

SHARDED = {  # accelerate's environment flags (set by `accelerate launch` from a config) -> name
    "ACCELERATE_USE_FSDP": "FSDP",
    "ACCELERATE_USE_DEEPSPEED": "DeepSpeed",
    "ACCELERATE_USE_MEGATRON_LM": "Megatron-LM",
}


@dataclass
class Dist:
    """This process's place: its rank among `world` processes and its device."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    accelerator: object | None = None
    """accelerate's `Accelerator` that set this up (None: a single process built by hand)."""

    @property
    def main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        """'device cpu' / 'device cuda:0, 4 processes (nccl)': what a run prints at its start."""
        if self.world == 1:
            return f"device {self.device}"
        return f"device {self.device}, {self.world} processes ({torch.distributed.get_backend()})"

    def _all_reduce(self, value: float) -> float:
        # float64 on the process's device: NCCL reduces only GPU tensors, gloo CPU ones
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return float(t.item())

    def mean(self, value: float) -> float:
        return value if self.world == 1 else self._all_reduce(value) / self.world

    def sum(self, value: float) -> float:
        return value if self.world == 1 else self._all_reduce(value)

    def average_gradients(self, params) -> None:
        """All-reduce the gradients as one flat buffer and divide by the number of processes."""
        if self.world == 1:
            return
        grads = [p.grad for p in params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def available(device: str) -> bool:
    """Whether torch can use a device kind here."""
    if device == "cuda":
        return torch.cuda.is_available()
    if device == "mps":
        return torch.backends.mps.is_available()
    return device == "cpu"


def resolve(device: str) -> str:
    """`RunConfig.device` -> cpu | cuda | mps on this machine; a kind it lacks is an error."""
    if device not in DEVICES:
        raise ConfigError(f"device: expected one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        return next(d for d in ("cuda", "mps", "cpu") if available(d))
    if not available(device):
        raise ConfigError(f"device: {device} is not available on this machine (torch {torch.__version__}"
                          f"{', built without CUDA' if device == 'cuda' and not torch.version.cuda else ''}); "
                          "use device: auto or cpu")
    return device


def init(device: str = "auto") -> Dist:
    """Set up this process through accelerate (see the module docstring) on `device`
    (`RunConfig.device`)."""
    for flag, name in SHARDED.items():
        if os.environ.get(flag, "false").lower() in ("true", "1"):
            raise ConfigError(f"accelerate config: {name} is not supported: unift keeps whole weights on every "
                              "process and all-reduces the gradients itself, and its log-prob pass, rollout engine "
                              "and checkpoints read the weights outside the model's forward "
                              "(unift/train/distributed.py); use a data-parallel config (configs/accelerate/)")
    from accelerate import Accelerator
    from accelerate.utils import parse_flag_from_env

    # `accelerate launch --cpu` (or `use_cpu: true` in its config) keeps `device: auto` on the CPU
    kind = "cpu" if device == "auto" and parse_flag_from_env("ACCELERATE_USE_CPU") else resolve(device)
    # cpu=True keeps accelerate off any GPU (and makes a multi-process launch gloo's)
    accelerator = Accelerator(cpu=kind == "cpu")
    if accelerator.device.type != kind:
        raise ConfigError(f"device: {device} asked, but accelerate placed this process on {accelerator.device} "
                          "(its launch config or ACCELERATE_TORCH_DEVICE decide otherwise)")
    if accelerator.mixed_precision != "no":
        warnings.warn(f"accelerate's mixed_precision {accelerator.mixed_precision} is not used: unift's "
                      "`precision` sets the autocast (precision: bf16)", UniftWarning, stacklevel=2)
    return Dist(rank=accelerator.process_index, world=accelerator.num_processes, device=accelerator.device,
                accelerator=accelerator)
