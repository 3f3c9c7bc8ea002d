"""Held-out evaluation of a policy on a task: greedy pass@1, reward, format, sampled pass@k and
success within `viter` verification iterations.

    unift eval runs/my-run --task countdown                  # every named variant, ID and OOD
    unift eval smollm2-135m-instruct --task countdown --variant id --variant ood_numbers --n 64

Metrics of `evaluate_policy` (one dict of floats per test set):
- `pass@1`: share of problems the greedy completion solves (`Score.correct`);
- `reward_mean`: mean task reward of the greedy completions (the task's own scale);
- `format_rate`: share of greedy completions the verifier could parse (`Score.parsed`);
- `finished_rate`: share of greedy completions that ended (EOS or stop string) before
  `max_new_tokens`;
- `truncated_rate`: share of greedy completions cut off by `max_new_tokens` (1 - finished_rate);
  a high value means the token budget, not the model, ended answers;
- `completion_tokens_mean`: mean length of the greedy completions;
- `pass@{k}` (k > 1): share of problems with at least one correct completion among k samples at
  temperature 1 (with n = k samples the unbiased estimator 1 - C(n-c, k)/C(n, k) is exactly this);
- `success@{j}` for j = 2..viter (viter > 1): solved within j graded attempts, where a failed
  attempt continues the conversation with the verifier's feedback (`tasks.retry_messages`) and
  the model retries greedily. Greedy retries are deterministic, so success@j read off a
  viter = V evaluation equals a viter = j evaluation;
- `n`: number of problems;
- `step_accuracy`, `route_success` (tasks played step by step, e.g. navigation's default step
  mode, whose problems are single points): each problem's whole route played greedily the
  study's way (the task's `run_episodes`: 2 tries per point, the route ends at the first point that
  fails both), per-step accuracy and the share of routes finished.

The test problems of every evaluation come from split "test" with seed `TEST_SEED`, so every
algorithm, run and checkpoint is measured on the same problems.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from unift.data.tokenize import render_prompt

TEST_SEED = 1234
"""Seed of the test problems: fixed so every algorithm sees the same test set."""


def _encode(tokenizer, messages) -> list[int]:
    return tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]


def evaluate_policy(
    model,
    tokenizer,
    task,
    problems: list[dict],
    *,
    k: int = 1,
    viter: int = 1,
    max_new_tokens: int = 256,
    engine=None,
    seed: int = 0,
    stop_strings=(),
    episodes: bool = True,
) -> dict[str, float]:
    """Evaluate `model` on `problems` of `task` (see the module docstring for the metrics).

    engine: a rollout engine to reuse (its weights are synced from `model` first); None builds an
    "hf" engine. seed: the sampling seed of pass@k (greedy decoding needs none). episodes: play
    whole episodes for tasks that have them (navigation's step mode: several greedy replies per
    problem, the costliest part of its evaluation).
    """
    from unift.rollout.engine import make_engine
    from unift.tasks import retry_messages

    if not problems:
        raise ValueError("evaluate_policy: no problems")
    if engine is None:
        engine = make_engine("hf", model, tokenizer)
    else:
        engine.sync(model)
    n = len(problems)
    messages = [task.prompt(p) for p in problems]
    prompt_ids = [_encode(tokenizer, m) for m in messages]
    gen = dict(max_new_tokens=max_new_tokens, stop_strings=tuple(stop_strings))

    # 1. greedy: pass@1, reward, format
    greedy = engine.generate(prompt_ids, 1, temperature=0.0, seed=seed, **gen)
    scores = [task.score(p, t) for p, t in zip(problems, greedy.texts, strict=True)]
    out: dict[str, float] = {
        "n": n,
        "pass@1": sum(s.correct for s in scores) / n,
        "reward_mean": sum(s.reward for s in scores) / n,
        "format_rate": sum(s.parsed is not None for s in scores) / n,
        "finished_rate": sum(greedy.finished) / n,
        "truncated_rate": sum(not f for f in greedy.finished) / n,
        "completion_tokens_mean": sum(len(c) for c in greedy.completion_ids) / n,
    }

    # 2. sampled pass@k: k samples per problem at temperature 1 (prompt-major)
    if k > 1:
        sampled = engine.generate(prompt_ids, k, temperature=1.0, seed=seed, **gen)
        solved = [False] * n
        for j, text in enumerate(sampled.texts):
            i = j // k
            solved[i] = solved[i] or task.score(problems[i], text).correct
        out[f"pass@{k}"] = sum(solved) / n

    # 3. verification iterations: retry failed problems with the verifier's feedback
    if viter > 1:
        solved_at = [1 if s.correct else 0 for s in scores]  # attempt that solved it (0: not yet)
        state = {i: (messages[i], greedy.texts[i], scores[i]) for i in range(n) if not scores[i].correct}
        for attempt in range(2, viter + 1):
            if state:
                convs = {i: retry_messages(task, problems[i], m, c, s) for i, (m, c, s) in state.items()}
                order = list(convs)
                retry = engine.generate([_encode(tokenizer, convs[i]) for i in order], 1,
                                        temperature=0.0, seed=seed, **gen)
                for i, text in zip(order, retry.texts, strict=True):
                    s = task.score(problems[i], text)
                    if s.correct:
                        solved_at[i] = attempt
                        del state[i]
                    else:
                        state[i] = (convs[i], text, s)
            out[f"success@{attempt}"] = sum(0 < a <= attempt for a in solved_at) / n

    # 4. tasks played step by step: whole episodes, every unfinished one in each greedy batch
    if episodes and (run_episodes := getattr(task, "run_episodes", None)) is not None:
        def policy(convs: list[list[dict]]) -> list[str]:
            ids = [_encode(tokenizer, c) for c in convs]
            return engine.generate(ids, 1, temperature=0.0, seed=seed, **gen).texts

        out.update(run_episodes(problems, policy))
    return out


def eval_problems(task, n: int, split: str = "test") -> list[dict]:
    """The fixed evaluation problems of a task variant (seed `TEST_SEED`)."""
    return task.problems(n, seed=TEST_SEED, split=split)


def evaluate_variants(
    model,
    tokenizer,
    task_name: str,
    variants: dict[str, dict],
    n: int,
    *,
    split: str = "test",
    engine=None,
    dtype: str = "auto",
    **kw,
) -> dict[str, dict[str, float]]:
    """{label: metrics} for each labelled task variant ({label: {variant: name, key: value}}),
    on `n` problems of `split` drawn with seed `TEST_SEED`. `kw` goes to `evaluate_policy`.
    dtype: of the engine built when none is given (auto: whichever decodes faster here)."""
    from unift import tasks
    from unift.rollout.engine import make_engine

    engine = engine or make_engine("hf", model, tokenizer, dtype=dtype)
    results = {}
    for label, variant in variants.items():
        task = tasks.get(task_name, **variant)
        results[label] = evaluate_policy(model, tokenizer, task, eval_problems(task, n, split),
                                         engine=engine, **kw)
    return results


# -- formatting ---------------------------------------------------------------------------------


def std_error(p: float, n: float) -> float:
    """Binomial standard error sqrt(p (1 - p) / n) of a rate measured on n problems."""
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n else float("nan")


def _fmt(value, pct: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.1f}" if pct else f"{value:.3f}"


def markdown_table(results: dict[str, dict], distributions: dict[str, str] | None = None) -> str:
    """A markdown table of `evaluate_variants` results: rates in percent, pass@1 with its
    binomial standard error."""
    distributions = distributions or {}
    pass_k = sorted({key for r in results.values() for key in r if key.startswith("pass@") and key != "pass@1"})
    success = sorted({key for r in results.values() for key in r if key.startswith("success@")},
                     key=lambda s: int(s.split("@")[1]))
    head = ["label", "distribution", "n", "pass@1 (%)", *(f"{c} (%)" for c in pass_k), "reward", "format (%)",
            "truncated (%)", *(f"{c} (%)" for c in success[-1:])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, r in results.items():
        p1 = r["pass@1"]
        cells = [label, distributions.get(label, "-"), str(int(r["n"])),
                 f"{100 * p1:.1f} ± {100 * std_error(p1, r['n']):.1f}",
                 *(_fmt(r.get(c)) for c in pass_k), _fmt(r.get("reward_mean"), pct=False),
                 _fmt(r.get("format_rate")), _fmt(r.get("truncated_rate")),
                 *(_fmt(r.get(c)) for c in success[-1:])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- CLI ----------------------------------------------------------------------------------------


def _run_task(model_spec: str) -> str | None:
    """The first task source's task of a run directory's config, if any."""
    import yaml

    path = Path(model_spec) / "config.yaml"
    if not path.is_file():
        return None
    config = yaml.safe_load(path.read_text()) or {}
    return next((s.get("task") for s in config.get("sources", []) if s.get("kind") == "task"), None)


def variants_from_args(task_name: str, items: list[str]) -> dict[str, dict]:
    """--variant items -> {label: variant}. Names (no "=") pick named variants, each its own
    test set; KEY=VALUE items override parameters of every one of them. No names: all of the
    task's named variants (ID and OOD)."""
    from unift import tasks
    from unift.tasks.export import parse_variant

    names = [item for item in items if "=" not in item]
    params = parse_variant([item for item in items if "=" in item])
    if not names:
        names = list(tasks.TASKS[task_name].variants()) or ["default"]
    out = {}
    for name in names:
        label = name if not params else f"{name}+" + ",".join(f"{k}={v}" for k, v in params.items())
        out[label] = {**({"variant": name} if name != "default" else {}), **params}
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="unift eval",
        description="Evaluate a model (or a run's final model) on a task's test sets: greedy pass@1, "
        "reward and format rate, sampled pass@k, success within VITER verification iterations.",
        epilog="examples:\n"
        "  unift eval runs/my-run --task countdown\n"
        "  unift eval smollm2-135m-instruct --task countdown --variant easy --variant ood_numbers --n 64\n"
        "  unift eval smollm2-135m-instruct --task general_points --viter 3 --k 1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="model spec (smollm2-135m-instruct, tiny, a model dir) or a run directory")
    p.add_argument("--task", help="task name, or a Task subclass as pkg.module:MyTask, imported from the working "
                   "directory (default: the run's task source, if MODEL is a run)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME|KEY=VALUE",
                   help="a named variant (repeatable: one test set each) or a parameter override "
                   "applied to all of them; default: every named variant of the task")
    p.add_argument("--split", choices=["train", "val", "test"], default="test",
                   help="test (held out; default) | val (for choosing settings) | train")
    p.add_argument("--n", type=int, default=128, help="problems per test set (default 128)")
    p.add_argument("--k", type=int, default=4, help="samples per problem for pass@k (1: none; default 4)")
    p.add_argument("--viter", type=int, default=1, help="graded attempts per problem (default 1)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="longest completion (default 256)")
    p.add_argument("--stop", action="append", metavar="TEXT",
                   help="stop string (repeatable; default: the task's own, e.g. </answer> for countdown)")
    p.add_argument("--no-stop", action="store_true", help="no stop strings: decode to EOS or --max-new-tokens")
    p.add_argument("--seed", type=int, default=0, help="sampling seed of pass@k (default 0)")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="decoding precision (auto: whichever measured faster on this CPU, "
                        "see `unift info`; default auto)")
    p.add_argument("--out", help="output directory for eval.json and eval.md "
                   "(default: the run directory, else runs/eval)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from unift import tasks

    is_run = (Path(args.model) / "model").is_dir()
    task_name = args.task or (_run_task(args.model) if is_run else None)
    if task_name is None:
        print("unift eval: error: --task is required (e.g. --task countdown)", file=sys.stderr)
        return 2
    try:  # a registered name, or a user's Task subclass as pkg.module:MyTask
        tasks.task_class(task_name)
    except (KeyError, ValueError) as err:
        print(f"unift eval: error: {err.args[0]}", file=sys.stderr)
        return 2
    stops = [] if args.no_stop else args.stop if args.stop is not None \
        else list(getattr(tasks.TASKS[task_name], "stop_strings", ()))
    try:
        variants = variants_from_args(task_name, args.variant)
        from unift.train.run import load_start  # a LoRA run: its adapter merged into its base

        model, tokenizer = load_start(args.model)
        results = evaluate_variants(model, tokenizer, task_name, variants, args.n, split=args.split, k=args.k,
                                    viter=args.viter, max_new_tokens=args.max_new_tokens, seed=args.seed,
                                    stop_strings=stops,
                                    dtype=args.precision)  # resolve_dtype reads auto, bf16, fp32
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as err:
        print(f"unift eval: error: {err}", file=sys.stderr)
        return 2
    named = tasks.TASKS[task_name].variants()
    distributions = {label: named.get(v.get("variant"), {}).get("distribution", "-")
                     for label, v in variants.items()}
    table = markdown_table(results, distributions)
    out = Path(args.out) if args.out else (Path(args.model) if is_run else Path("runs/eval"))
    out.mkdir(parents=True, exist_ok=True)
    record = {"model": args.model, "task": task_name, "split": args.split, "variants": variants,
              "distributions": distributions, "settings": {"n": args.n, "k": args.k, "viter": args.viter,
                                                           "max_new_tokens": args.max_new_tokens,
                                                           "stop_strings": stops},
              "results": results}
    (out / "eval.json").write_text(json.dumps(record, indent=2) + "\n")
    title = f"# {task_name}: {args.model} ({args.split} split)\n\n"
    (out / "eval.md").write_text(title + table + "\n")
    print(table)
    print(f"\nwritten: {out / 'eval.json'}, {out / 'eval.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
