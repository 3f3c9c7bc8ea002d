"""One benchmark measurement in a fresh process: `bench/run.py` spawns this once per
(benchmark, framework, precision, repeat), so frameworks never share torch state or threads.

    python bench/_worker.py sft unift --precision auto --warmup 1 --steps 4

Loads the model, runs `warmup` untimed steps, then `steps` timed optimiser steps on the same
fixed, in-order batches every time, and prints one JSON line: per-step seconds and units
(non-padding tokens for sft/flops, pairs for dpo). Model load and warm-up are never timed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import data  # noqa: E402

MODEL = "smollm2-135m-instruct"
MAX_LENGTH = 256
BATCH = {"sft": 8, "dpo": 4, "flops": 8}


def records(bench: str, n: int) -> list[dict]:
    if bench == "sft":
        return data.demonstrations()[:n]
    if bench == "dpo":
        return data.preferences()[:n]
    return data.fixed_length(n, MAX_LENGTH)


# -- unift ------------------------------------------------------------------------------------


def run_unift(bench: str, precision: str, warmup: int, steps: int, variant: str) -> dict:
    """unift's own step (`unift.train.step.train_step`), fed exactly as `unift train` feeds it."""
    import variants

    from unift.config import ModelConfig, RunConfig, SourceConfig
    from unift.data.records import from_rows
    from unift.models import ReferencePolicy, num_parameters
    from unift.train import losses, run
    from unift.train.step import Source, encode, train_step

    kind, objective = ("preference", "dpo-sigmoid") if bench == "dpo" else ("demonstration", "sft")
    config = RunConfig(model=ModelConfig(name=MODEL), max_length=MAX_LENGTH, precision=precision,
                       steps=warmup + steps,  # the diagnostics' schedule counts to the last step
                       sources=[SourceConfig(name=bench, kind=kind, objective=objective,
                                             batch_size=BATCH[bench], beta=0.1)])
    torch.set_num_threads(2)
    run.seed_everything(config.seed)
    policy, tokenizer, choice = run.build_policy(config)  # resolves auto as `unift train` does
    patch = variants.apply(variant, policy, choice.train)
    config = dataclasses.replace(config, **patch.settings)
    reference = ReferencePolicy(policy)
    recs = from_rows(records(bench, BATCH[bench] * (warmup + steps)), kind)
    source = Source(bench, kind, losses.get(objective, kind), None, batch_size=BATCH[bench], beta=0.1)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = patch.optimizer(params, lr=1e-5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    seconds, units, cpu = [], [], []
    for step in range(warmup + steps):
        chunk = recs[step * BATCH[bench]:(step + 1) * BATCH[bench]]
        start, cpu_start = time.perf_counter(), time.process_time()
        micro = [[encode(source, chunk, tokenizer, MAX_LENGTH)]]  # tokenising is part of unift's step
        metrics = train_step(policy, reference, micro, optimizer, scheduler, precision=patch.precision,
                             diagnostics_ref=run.diagnostics_due(config, step))  # as `unift train`
        elapsed, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
        if step >= warmup:
            seconds.append(elapsed)
            cpu.append(cpu_s)
            units.append(len(chunk) if bench == "dpo" else metrics["tokens"])
    return {"step_s": seconds, "cpu_s": cpu, "units": units, "parameters": num_parameters(policy),
            "loss": metrics["loss"], "precision": patch.describe, "resolved": choice.train}


# -- TRL --------------------------------------------------------------------------------------


def run_trl(bench: str, precision: str, warmup: int, steps: int) -> dict:
    """TRL's SFTTrainer / DPOTrainer on the same records in the same order (sequential sampler),
    without gradient checkpointing (TRL turns it on by default; off is faster, memory is ample)."""
    import datasets
    import transformers
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from unift.models import resolve

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    torch.set_num_threads(2)
    path = resolve(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    dataset = datasets.Dataset.from_list(records(bench, BATCH[bench] * (warmup + steps)))
    seconds: list[float] = []
    cpu: list[float] = []
    units: list[int] = []
    pending = {"tokens": 0}

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            pending["tokens"] = 0
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kw):
            seconds.append(time.perf_counter() - self.start)
            cpu.append(time.process_time() - self.cpu_start)
            units.append(BATCH[bench] if bench == "dpo" else pending["tokens"])

    common = dict(output_dir=tempfile.mkdtemp(prefix="bench-trl-"), per_device_train_batch_size=BATCH[bench],
                  max_length=MAX_LENGTH, max_steps=warmup + steps, learning_rate=1e-5,
                  lr_scheduler_type="constant", bf16=precision == "bf16", use_cpu=True,
                  gradient_checkpointing=False, train_sampling_strategy="sequential", save_strategy="no",
                  report_to=[], logging_steps=1, disable_tqdm=True, dataloader_num_workers=0, seed=0)
    if bench == "dpo":
        trainer_cls, args = trl.DPOTrainer, trl.DPOConfig(beta=0.1, loss_type=["sigmoid"], **common)
    else:
        trainer_cls, args = trl.SFTTrainer, trl.SFTConfig(packing=False, **common)

    class Counting(trainer_cls):
        def compute_loss(self, model, inputs, *a, **kw):
            if "attention_mask" in inputs:
                pending["tokens"] += int(inputs["attention_mask"].sum())
            return super().compute_loss(model, inputs, *a, **kw)

    trainer = Counting(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                       callbacks=[Timer()])
    trainer.train()
    autocast = trainer.accelerator.mixed_precision
    return {"step_s": seconds[warmup:], "cpu_s": cpu[warmup:], "units": units[warmup:],
            "gradient_checkpointing": bool(trainer.model.is_gradient_checkpointing),
            "loss": trainer.state.log_history[-2].get("loss") if len(trainer.state.log_history) > 1 else None,
            "precision": f"fp32 weights, accelerate mixed_precision={autocast}", "trl": trl.__version__}


def main() -> None:
    from unift.precision import PRECISIONS

    parser = argparse.ArgumentParser()
    parser.add_argument("bench", choices=["sft", "dpo", "flops"])
    parser.add_argument("framework", choices=["unift", "trl"])
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="TRL: bf16 or fp32 only")
    parser.add_argument("--variant", default="default", help="unift only: see bench/variants.py")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(2)
    if args.bench == "flops":  # the matmul peak right before and after, under the same load
        import peak

        before = peak.matmul_gflops()
    if args.framework == "unift":
        out = run_unift(args.bench, args.precision, args.warmup, args.steps, args.variant)
    else:
        out = run_trl(args.bench, args.precision, args.warmup, args.steps)
    if args.bench == "flops":
        out["peak_before"] = before
        out["peak_after"] = peak.matmul_gflops()
    out["loadavg_end"] = os.getloadavg()[0]
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
