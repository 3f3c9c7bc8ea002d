"""Held-out evaluation inside a run (`RunConfig.eval`), written to run_dir/evals.jsonl."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from unift import tasks
from unift.config import RunConfig
from unift.evaluate import eval_problems, evaluate_policy
from unift.rollout.engine import make_engine
from unift.train.metrics import open_step_log


class Evaluator:
    """Held-out evaluation inside a run: before training, every `every_steps` steps or
    `every_flops` FLOPs, and at the end; one row per variant label in evals.jsonl, each also
    handed to `track` (the run's trackers: `MetricsWriter.track_eval`)."""

    def __init__(self, config: RunConfig, tokenizer, sources: list, run_dir: Path, resume_step=None,
                 engine_dtype: str = "auto", track: Callable[[dict], None] | None = None):
        ev = config.eval
        self.engine_dtype, self.track = engine_dtype, track
        self.spec, self.tokenizer = ev, tokenizer
        variants = ev.variants or {"default": {}}
        self.sets = {}
        for label, variant in variants.items():
            task = tasks.get(ev.task, **variant)
            self.sets[label] = (task, eval_problems(task, ev.n, ev.split))
        engine = next((s.rollout.engine for s in sources if s.rollout is not None and s.rollout.engine), None)
        self.engine = engine
        self.writer = open_step_log(run_dir / "evals.jsonl", resume_step)
        self.last_step = resume_step
        self.next_flops = ev.every_flops

    def due(self, step: int, flops: float) -> bool:
        ev = self.spec
        if ev.every_flops and flops >= self.next_flops:
            while self.next_flops <= flops:  # one evaluation per crossed multiple of every_flops
                self.next_flops += ev.every_flops
            return True
        return bool(ev.every_steps) and step % ev.every_steps == 0

    def __call__(self, policy, *, step: int, flops: float) -> None:
        if self.engine is None:
            self.engine = make_engine("hf", policy, self.tokenizer, dtype=self.engine_dtype)
        policy.eval()
        for label, (task, problems) in self.sets.items():
            result = evaluate_policy(policy, self.tokenizer, task, problems, k=self.spec.k, viter=self.spec.viter,
                                     max_new_tokens=self.spec.max_new_tokens, engine=self.engine,
                                     stop_strings=getattr(task, "stop_strings", ()) if self.spec.stop_strings is None
                                     else self.spec.stop_strings)
            row = {"step": step, "flops": flops, "label": label, "task": task.name,
                   "variant": task.variant_name, **result}
            self.writer.write(json.dumps(row) + "\n")
            self.writer.flush()
            if self.track is not None:
                self.track(row)
        self.last_step = step
