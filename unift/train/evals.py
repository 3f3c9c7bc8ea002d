"""Held-out evaluation inside a run (its `eval:` settings), written to run_dir/evals.jsonl."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from unift.evaluate import eval_problems, evaluate_policy
from unift.rollout.engine import make_engine
from unift.train.metrics import open_step_log


class Evaluator:
    """Held-out evaluation inside a run: before training, every `every_steps` steps or
    `every_flops` FLOPs (0: not by steps, not by FLOPs), and at the end; one row per variant label
    in evals.jsonl, each also handed to `track` (the run's trackers: `MetricsWriter.track_eval`)."""

    def __init__(self, variants: dict, tokenizer, run_dir: Path, *, n: int, split: str, k: int, viter: int,
                 max_new_tokens: int, stop_strings: list[str] | None, every_steps: int, every_flops: float,
                 engine=None, resume_step=None, engine_dtype: str = "auto",
                 track: Callable[[dict], None] | None = None):
        """variants: label -> Task, each evaluated on `n` problems of `split`; k, viter,
        max_new_tokens: as `unift.evaluate.evaluate_policy` takes them; stop_strings None: each
        task's own; engine: a task source's rollout engine to share (else an hf engine in
        `engine_dtype` is made at the first evaluation)."""
        self.engine_dtype, self.track = engine_dtype, track
        self.tokenizer = tokenizer
        self.k, self.viter, self.max_new_tokens, self.stop_strings = k, viter, max_new_tokens, stop_strings
        self.every_steps, self.every_flops = every_steps, every_flops
        self.sets = {label: (task, eval_problems(task, n, split)) for label, task in variants.items()}
        self.engine = engine
        self.writer = open_step_log(run_dir / "evals.jsonl", resume_step)
        self.last_step = resume_step
        self.next_flops = every_flops

    def due(self, step: int, flops: float) -> bool:
        if self.every_flops and flops >= self.next_flops:
            while self.next_flops <= flops:  # one evaluation per crossed multiple of every_flops
                self.next_flops += self.every_flops
            return True
        return bool(self.every_steps) and step % self.every_steps == 0

    def __call__(self, policy, *, step: int, flops: float) -> None:
        if self.engine is None:
            self.engine = make_engine("hf", policy, self.tokenizer, dtype=self.engine_dtype)
        policy.eval()
        for label, (task, problems) in self.sets.items():
            result = evaluate_policy(policy, self.tokenizer, task, problems, k=self.k, viter=self.viter,
                                     max_new_tokens=self.max_new_tokens, engine=self.engine,
                                     stop_strings=getattr(task, "stop_strings", ()) if self.stop_strings is None
                                     else self.stop_strings)
            row = {"step": step, "flops": flops, "label": label, "task": task.name,
                   "variant": task.variant_name, **result}
            self.writer.write(json.dumps(row) + "\n")
            self.writer.flush()
            if self.track is not None:
                self.track(row)
        self.last_step = step
