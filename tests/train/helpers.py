"""Small builders shared by the trainer tests."""

from pathlib import Path

from unift.config import RunConfig, SourceConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "data"


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
