"""One GRPO benchmark measurement in a fresh process (`bench/run.py --only grpo` spawns it).

    python bench/_grpo_worker.py unift --steps 3 --warmup 1            # unift default: bf16
    python bench/_grpo_worker.py trl --steps 3 --warmup 1 --precision fp32

Identical work for both frameworks, SmolLM2-135M-Instruct: each step takes 4 Countdown prompts
(`unift.tasks.get("countdown", variant="id").problems(...)`, rendered as chat messages, the same
prompts in the same order), samples 4 completions of each at temperature 1 with exactly 64 new
tokens (EOS never stops a completion: unift's engine `ignore_eos`, TRL `min_new_tokens=64`),
scores them with the task's TRL-style `reward_fn`, and takes one optimiser step of the GRPO loss
(DAPO token mean, epsilon 0.2, KL to the reference model with coefficient 0.001 (TRL `beta`,
unift `c_kl`), no entropy bonus), learning rate 1e-6, constant. A step = rollouts + rewards +
reference and policy log-probs + loss + backward + optimiser step. Model load and the warm-up
steps are never timed. Prints one line: `RESULT {json}` with per-step seconds, rollout seconds
and generated tokens per step.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import tempfile
import time

import torch

MODEL = "smollm2-135m-instruct"
PROMPTS, GENERATIONS, NEW_TOKENS = 4, 4, 64
LR, KL = 1e-6, 0.001


def problems(n: int) -> tuple[object, list[dict]]:
    from unift import tasks

    task = tasks.get("countdown", variant="id")
    return task, task.problems(n, seed=0, split="train")


# -- unift ------------------------------------------------------------------------------------


def unift_setup(precision: str, n: int):
    """The policy, tokenizer, task source (exactly NEW_TOKENS per completion) and config of
    unift's side for `n` problems; `bench/grpo_phases.py` builds its batch with it too."""
    from unift.config import ModelConfig, RolloutSpec, RunConfig, SourceConfig
    from unift.train import run

    spec = RolloutSpec(num_generations=GENERATIONS, max_new_tokens=NEW_TOKENS, temperature=1.0, num_problems=n)
    source_config = SourceConfig(name="countdown", kind="task", task="countdown", variant={"variant": "id"},
                                 objective="grpo", batch_size=PROMPTS, rollout=spec,
                                 params={"c_kl": KL, "c_ent": 0.0, "c_nll": 0.0})  # preset rft, no entropy
    config = RunConfig(model=ModelConfig(name=MODEL), precision=precision, sources=[source_config])
    run.seed_everything(config.seed)
    policy, tokenizer, choice = run.build_policy(config)  # resolves auto as `unift train` does
    config = dataclasses.replace(config, precision=choice.train)
    (source,) = run.build_sources(config, pathlib.Path("."), policy, tokenizer, rollout_dtype=choice.rollout)
    engine = source.rollout.engine
    generate = engine.generate

    def forced(*a, **kw):  # exactly NEW_TOKENS per completion: EOS does not stop (equal work with TRL)
        return generate(*a, **{**kw, "ignore_eos": True})

    engine.generate = forced
    return policy, tokenizer, source, config  # config.precision: resolved (never auto)


def run_unift(precision: str, warmup: int, steps: int, retain: bool = True) -> dict:
    """unift's step as `unift train` runs it (`encode` = rollout stage, then `train_step`), on a
    fixed in-order chunk of problems per step instead of the shuffled stream."""
    from unift.memory import retain_freed_memory
    from unift.models import ReferencePolicy, num_parameters
    from unift.precision import PRECISIONS
    from unift.train import run
    from unift.train.optim import adamw
    from unift.train.step import encode, train_step

    n = PROMPTS * (warmup + steps)
    torch.set_num_threads(2)
    if retain:
        retain_freed_memory()  # as `unift train` does
    policy, tokenizer, source, config = unift_setup(precision, n)
    reference = ReferencePolicy(policy)
    engine = source.rollout.engine
    # the same problems, in the same order, as the TRL worker
    _, probs = problems(n)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = adamw(params, precision=config.precision, lr=LR)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    seconds, rollout_s, gen_tokens, completion_mean, rewards = [], [], [], [], []
    metrics: dict = {}
    for step in range(warmup + steps):
        chunk = probs[step * PROMPTS:(step + 1) * PROMPTS]
        start = time.perf_counter()
        micro = [[encode(source, chunk, tokenizer, config.max_length, step=step, total_steps=warmup + steps,
                         policy=policy)]]
        metrics = train_step(policy, reference, micro, optimizer, scheduler, precision=config.precision,
                             grad_clip=config.optim.grad_clip,
                             diagnostics_ref=run.diagnostics_due(config, step))  # as `unift train`
        elapsed = time.perf_counter() - start
        if step >= warmup:
            seconds.append(elapsed)
            tok = metrics["countdown/rollout_tokens"]
            gen_tokens.append(int(tok))
            rps = metrics["countdown/rollout_tokens_per_s"]
            rollout_s.append(tok / rps if rps else 0.0)
            completion_mean.append(metrics["countdown/completion_tokens_mean"])
            rewards.append(metrics["countdown/reward_mean"])
    return {"step_s": seconds, "rollout_s": rollout_s, "gen_tokens": gen_tokens,
            "completion_len_mean": completion_mean, "reward_mean": rewards, "loss": metrics.get("loss"),
            "parameters": num_parameters(policy),
            "precision": f"{PRECISIONS[config.precision]} training, {engine.dtype} rollout engine "
                         f"({type(engine).__name__}, impl={getattr(engine, 'impl', '?')})",
            "resolved": config.precision}


# -- TRL --------------------------------------------------------------------------------------


def run_trl(precision: str, warmup: int, steps: int) -> dict:
    """TRL's GRPOTrainer with transformers' generate on CPU (no vLLM), same prompts in order."""
    import datasets
    import transformers
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from unift.models import resolve

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    torch.set_num_threads(2)
    n = PROMPTS * (warmup + steps)
    task, probs = problems(n)
    path = str(resolve(MODEL))
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    dataset = datasets.Dataset.from_list([{"prompt": task.prompt(p), "problem": p} for p in probs])

    def countdown_reward(prompts, completions, problem, **kw):
        return task.reward_fn(prompts, completions, problem=problem)

    seconds: list[float] = []
    rollout: dict = {"s": 0.0, "tokens": 0, "rows": 0}
    rollout_s: list[float] = []
    gen_tokens: list[int] = []
    completion_mean: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            rollout.update(s=0.0, tokens=0, rows=0)
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            seconds.append(time.perf_counter() - self.start)
            rollout_s.append(rollout["s"])
            gen_tokens.append(rollout["tokens"])
            completion_mean.append(rollout["tokens"] / max(1, rollout["rows"]))

    args = trl.GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="bench-trl-grpo-"), per_device_train_batch_size=PROMPTS * GENERATIONS,
        num_generations=GENERATIONS, max_completion_length=NEW_TOKENS, temperature=1.0,
        generation_kwargs={"min_new_tokens": NEW_TOKENS},  # exactly 64 new tokens, as unift's ignore_eos
        beta=KL, learning_rate=LR, lr_scheduler_type="constant", max_steps=warmup + steps,
        bf16=precision == "bf16", use_cpu=True, gradient_checkpointing=False, shuffle_dataset=False,
        save_strategy="no", report_to=[], logging_steps=1, disable_tqdm=True, dataloader_num_workers=0, seed=0)

    class Timed(trl.GRPOTrainer):
        def _generate_single_turn(self, *a, **kw):  # the generation call: transformers' generate
            start = time.perf_counter()
            out = super()._generate_single_turn(*a, **kw)
            rollout["s"] += time.perf_counter() - start
            rollout["tokens"] += sum(len(c) for c in out[0])
            rollout["rows"] += len(out[0])
            return out

    trainer = Timed(model=model, reward_funcs=countdown_reward, args=args, train_dataset=dataset,
                    processing_class=tokenizer, callbacks=[Timer()])
    trainer.train()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    return {"step_s": seconds[warmup:], "rollout_s": rollout_s[warmup:], "gen_tokens": gen_tokens[warmup:],
            "completion_len_mean": completion_mean[warmup:],
            "reward_mean": [h.get("reward") for h in logs[warmup:]],
            "loss": logs[-1].get("loss") if logs else None,
            "ref_model": trainer.ref_model is not None,
            "gradient_checkpointing": bool(trainer.model.is_gradient_checkpointing),
            "precision": f"fp32 weights, accelerate mixed_precision={trainer.accelerator.mixed_precision} "
                         f"(training and generation)", "trl": trl.__version__}


def main() -> None:
    from unift.precision import PRECISIONS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("framework", choices=["unift", "trl"])
    parser.add_argument("--precision", default=None, choices=PRECISIONS,
                        help="default: auto for unift (its default), fp32 for TRL (plain CPU run)")
    parser.add_argument("--glibc-malloc", action="store_true",
                        help="unift: keep glibc's malloc settings (an ablation of unift.memory)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(2)
    load_start = os.getloadavg()[0]
    if args.framework == "unift":
        out = run_unift(args.precision or "auto", args.warmup, args.steps, retain=not args.glibc_malloc)
    else:
        out = run_trl(args.precision or "fp32", args.warmup, args.steps)
    out["rollout_tokens_per_s"] = sum(out["gen_tokens"]) / max(1e-9, sum(out["rollout_s"]))
    out["loadavg_start"] = load_start
    out["loadavg_end"] = os.getloadavg()[0]
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
