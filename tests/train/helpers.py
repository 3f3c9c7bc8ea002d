"""Small builders shared by the trainer tests."""

from pathlib import Path

from unift.config import RunConfig, SourceConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "data"


def tiny_compare(evals: int) -> list[str]:
    """`unift compare` arguments for a fast comparison on the tiny model, evaluated `evals` times."""
    return ["--model", "tiny", "--set", "batch_size=2", "--set", "num_generations=2", "--set", "max_new_tokens=8",
            "--set", "eval_n=4", "--set", "num_problems=32", "--set", "progress=false", "--set", f"evals={evals}",
            "--set", "lr=1e-3"]


def tiny_run(tmp_path: Path, sources: list[dict], **overrides) -> RunConfig:
    """A RunConfig on the tiny model with fast settings; overrides as dotted keys."""
    config = load_config(None, [f"{k}={v}" for k, v in overrides.items()])
    config.model.name = "tiny"
    config.sources = [SourceConfig(**s) for s in sources]
    config.output_dir = str(tmp_path / "run")
    config.progress = False
    config.max_length = 128
    return config


def source(kind: str, objective: str, path: str, **kw) -> dict:
    return {"name": kw.pop("name", kind), "kind": kind, "objective": objective, "path": str(DATA / path), **kw}


def scripted_rollouts(tokenizer, prompt_ids: list, texts: list[str], seconds: float = 0.0):
    """A scripted engine's `Rollouts` of completion `texts` (all finished; log-probs 0)."""
    from unift.rollout.engine import Rollouts

    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    return Rollouts(prompt_ids, ids, [[0.0] * len(c) for c in ids], texts, [True] * len(texts),
                    sum(map(len, ids)), seconds)
