"""`precision: auto` (unift.precision): the choice follows the measurement both ways, the
measurement is cached per machine and torch version, explicit choices are kept (with a warning
when measured much slower), and every entry point resolves auto before it trains or decodes."""

import json

import pytest
import torch
import yaml

from tests.rl.test_rl_trainer import config_with, task_source
from unift import precision
from unift.precision import Rates

BF16_FAST = Rates(train_fp32=100.0, train_bf16=300.0, decode_fp32=80.0, decode_bf16=160.0)
FP32_FAST = Rates(train_fp32=140.0, train_bf16=9.0, decode_fp32=100.0, decode_bf16=30.0)
MIXED = Rates(train_fp32=100.0, train_bf16=150.0, decode_fp32=100.0, decode_bf16=60.0)


class Calls(list):
    """The measure() calls made; `script(rates)` sets what the next ones return."""

    def __init__(self, monkeypatch):
        super().__init__()
        self.monkeypatch = monkeypatch

    def script(self, rates: Rates) -> None:
        def measure(hidden, intermediate):
            self.append((hidden, intermediate))
            return rates
        self.monkeypatch.setattr(precision, "measure", measure)


@pytest.fixture
def measured(tmp_path, monkeypatch):
    """A fresh measurement cache (the models' cache stays) and a scripted measurement."""
    monkeypatch.setattr(precision, "cache_file", lambda: tmp_path / "cache" / "precision.json")
    return Calls(monkeypatch)


@pytest.mark.parametrize("rates, train, rollout", [
    (BF16_FAST, "bf16", "bfloat16"), (FP32_FAST, "fp32", "float32"), (MIXED, "bf16", "float32"),
])
def test_auto_picks_what_measured_faster(measured, rates, train, rollout):
    measured.script(rates)
    choice = precision.choose("auto", 64, 96)
    assert (choice.train, choice.rollout) == (train, rollout)
    assert choice.train in ("bf16", "fp32") and "auto" in choice.reason


def test_explicit_precision_is_kept_and_warned_about_when_over_2x_slower(measured):
    measured.script(FP32_FAST)
    warnings = []
    choice = precision.choose("bf16", 64, 96, warn=warnings.append)
    assert (choice.train, choice.rollout) == ("bf16", "bfloat16")
    assert len(warnings) == 1 and "15.6x slower than fp32" in warnings[0]  # 140 / 9
    assert precision.choose("fp32", 64, 96, warn=warnings.append).rollout == "float32"
    assert len(warnings) == 1  # fp32 is the fast one here
    measured.script(MIXED)  # bf16 1.5x faster: under the 2x threshold, no warning for fp32
    assert precision.choose("fp32", 64, 96, warn=warnings.append).train == "fp32"
    assert len(warnings) == 1
    with pytest.raises(ValueError, match="precision: 'fp16' is not one of auto, bf16"):
        precision.choose("fp16", 64, 96)


def test_measurement_is_cached_once_and_redone_for_a_new_torch(measured, monkeypatch):
    measured.script(BF16_FAST)
    assert precision.rates(64, 96) == BF16_FAST
    assert precision.rates(64, 96) == BF16_FAST
    assert measured == [(64, 96)]  # measured once, then read from the file
    entries = json.loads(precision.cache_file().read_text())
    (key,) = entries
    assert f"torch {torch.__version__}" in key and "64x96" in key and precision.cpu_model() in key
    precision.rates(32, 48)  # other shapes: measured and kept beside the first
    assert len(measured) == 2 and len(json.loads(precision.cache_file().read_text())) == 2
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    measured.script(FP32_FAST)
    assert precision.rates(64, 96) == FP32_FAST
    assert len(measured) == 3
    (key,) = json.loads(precision.cache_file().read_text())  # old torch's entries dropped
    assert "torch 9.9.9" in key


def test_unreadable_cache_is_measured_again(measured):
    measured.script(BF16_FAST)
    precision.cache_file().parent.mkdir(parents=True)
    precision.cache_file().write_text("{not json")
    assert precision.rates(64, 96) == BF16_FAST and measured == [(64, 96)]


def test_the_real_measurement_is_quick_and_positive():
    """At SmolLM2's shapes. It took 0.7 s (native bf16) and 1.1 s (AVX2, bf16 emulated) alone on
    the project's CPU (docs/LOG.md, 2026-12-01); the bound here leaves room for a busy CI."""
    rates = precision.measure(576, 1536)
    assert rates.seconds < 5.0, rates
    assert min(rates.train_fp32, rates.train_bf16, rates.decode_fp32, rates.decode_bf16) > 0


@pytest.mark.parametrize("rates, train, dtype", [(BF16_FAST, "bf16", torch.bfloat16),
                                                 (FP32_FAST, "fp32", torch.float32)])
def test_training_resolves_auto_for_the_steps_the_engine_and_config_yaml(measured, tmp_path, monkeypatch,
                                                                         rates, train, dtype):
    """A run with precision auto trains, decodes and records the concrete choice."""
    from unift.rollout import hf
    from unift.train import run, step

    measured.script(rates)
    seen_steps, seen_engines = [], []
    real_step, real_init = run.train_step, hf.HFEngine.__init__

    def spy_step(*args, **kw):
        seen_steps.append(kw["precision"])
        return real_step(*args, **kw)

    def spy_init(self, *args, **kw):
        real_init(self, *args, **kw)
        seen_engines.append(self.dtype)

    monkeypatch.setattr(run, "train_step", spy_step)
    monkeypatch.setattr(hf.HFEngine, "__init__", spy_init)
    config = config_with(tmp_path, [task_source(preset="rft", num_generations=2, max_new_tokens=4)], steps=1)
    assert config.precision == "auto"
    run_dir = run.train(config)
    assert seen_steps == [train] and seen_engines == [dtype]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["precision"] == train
    with pytest.raises(ValueError, match="auto resolved"):
        step.autocast("auto")


def test_engine_and_evaluation_resolve_auto(measured):
    from unift.models import load
    from unift.rollout.engine import make_engine

    model, tokenizer = load("tiny")
    measured.script(FP32_FAST)
    assert make_engine("hf", model, tokenizer).dtype == torch.float32
    measured.script(BF16_FAST)
    precision.cache_file().unlink()
    assert make_engine("hf", model, tokenizer).dtype == torch.bfloat16
    assert make_engine("hf", model, tokenizer, dtype="float32").dtype == torch.float32


def test_info_prints_the_machine_and_the_choice(measured, capsys):
    from unift.cli import main

    measured.script(FP32_FAST)
    assert main(["info", "--shapes", "64x96"]) == 0
    out = capsys.readouterr().out
    assert "fp32 140.0 GFLOP/s, bf16 autocast 9.0 GFLOP/s" in out
    assert "training fp32, rollouts and evaluation float32" in out
    assert precision.cpu_model() in out and torch.__version__ in out and "precision.json" in out
