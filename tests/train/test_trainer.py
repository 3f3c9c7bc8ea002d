"""Every offline objective trains the tiny model: step-1 losses pinned by hand (pi = pi_ref at
step 1, so every implicit reward r is 0), and the loss falls."""

import math

import pytest
import torch
import torch.nn.functional as F

from tests.train.helpers import source, tiny_run
from unift.data.records import load_jsonl
from unift.train.metrics import read_metrics
from unift.train.run import train

SIGMA0 = 0.5  # sigma(r) at r = 0


def losses_of(tmp_path, sources, steps=6, **kw):
    config = tiny_run(tmp_path, sources, steps=steps, **{"optim.lr": 2e-3, "optim.warmup_steps": 0,
                                                          "optim.schedule": "constant", **kw})
    rows = read_metrics(train(config))
    return [r["loss"] for r in rows], rows


CASES = [
    # objective, kind, file, step-1 loss worked out with r = 0
    ("uft-implicit-mse", "demonstration", "demonstrations.jsonl", (SIGMA0 - 1) ** 2),  # 0.25
    ("uft-implicit-bce", "demonstration", "demonstrations.jsonl", math.log(2)),  # -log sigma(0)
    ("dpo-sigmoid", "preference", "preferences.jsonl", math.log(2)),  # -log sigma(beta * 0)
    ("una-pairwise", "preference", "preferences.jsonl", math.log(2)),
    ("dpo-hinge", "preference", "preferences.jsonl", 1.0),  # relu(1 - beta * 0)
    ("dpo-ipo", "preference", "preferences.jsonl", (1 / (2 * 0.1)) ** 2),  # (0 - 1/(2 beta))^2 = 25
    ("una-binary-mse", "binary", "binary.jsonl", 0.25),  # (0.5 - 1)^2 = (0.5 - 0)^2
    ("una-binary-bce", "binary", "binary.jsonl", math.log(2)),
]


@pytest.mark.parametrize("objective,kind,path,first", CASES, ids=[c[0] for c in CASES])
def test_objective_trains_tiny_model(tmp_path, objective, kind, path, first):
    losses, rows = losses_of(tmp_path, [source(kind, objective, path, batch_size=4, beta=0.1)])
    assert losses[0] == pytest.approx(first, rel=1e-5)
    assert rows[0][f"{kind}/rewards/" + ("margin" if kind == "preference" else "implicit")] == 0.0
    assert min(losses[-2:]) < losses[0]


def test_una_score_first_loss_is_mean_squared_distance_from_one_half(tmp_path):
    records = load_jsonl(source("score", "x", "score.jsonl")["path"], "score")
    losses, _ = losses_of(tmp_path, [source("score", "una-score-mse", "score.jsonl", batch_size=16, beta=0.1)],
                          steps=4)
    # a batch of 16 is the whole file (one permutation), so the first loss is over every score
    expected = sum((SIGMA0 - r.target) ** 2 for r in records) / len(records)
    assert losses[0] == pytest.approx(expected, rel=1e-5)
    assert losses[-1] < losses[0]


def test_sft_first_loss_equals_naive_cross_entropy(tmp_path):
    """The trainer's NLL (LM head only at completion positions) equals full-logits cross entropy."""
    from unift.data.tokenize import collate, tokenize_pair
    from unift.models import load

    model, tok = load("tiny")
    recs = load_jsonl(source("demonstration", "sft", "demonstrations.jsonl")["path"], "demonstration")
    # the run's first batch: the stream's first permutation (seed 0, source 0, epoch 0)
    from unift.data.mixture import Stream

    first = Stream(recs, 0, 0).take(4)
    batch = collate([tokenize_pair(tok, r.prompt, r.completion, 128) for r in first], tok.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    labels = batch.input_ids[:, 1:].masked_fill(~batch.loss_mask[:, 1:], -100)
    naive = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1))
    losses, _ = losses_of(tmp_path, [source("demonstration", "sft", "demonstrations.jsonl", batch_size=4)],
                          precision="fp32", steps=5)
    assert losses[0] == pytest.approx(float(naive), rel=1e-5)
    assert losses[-1] < losses[0] - 0.5


def test_fifty_fifty_mix_sums_weighted_losses(tmp_path):
    losses, rows = losses_of(tmp_path, [
        source("demonstration", "uft-implicit-mse", "demonstrations.jsonl", name="demo", weight=0.5),
        source("preference", "una-pairwise", "preferences.jsonl", name="pref", weight=0.5),
    ], steps=8)
    assert losses[0] == pytest.approx(0.5 * 0.25 + 0.5 * math.log(2), rel=1e-5)
    for r in rows:
        assert r["loss"] == pytest.approx(0.5 * r["demo/loss"] + 0.5 * r["pref/loss"], rel=1e-6)
    assert losses[-1] < losses[0]
    last = rows[-1]
    assert last["pref/rewards/chosen"] > last["pref/rewards/rejected"]
    assert last["demo/rewards/implicit"] > 0 and last["demo/kl/ref"] > 0
    for key in ("step", "loss", "lr", "tokens_per_s"):
        assert key in last


def test_lora_reference_is_the_adapter_free_network(tmp_path):
    config = tiny_run(tmp_path, [source("preference", "dpo-sigmoid", "preferences.jsonl")], steps=3,
                      **{"optim.lr": 1e-2, "model.lora.r": 4, "model.lora.alpha": 8})
    run_dir = train(config)
    rows = read_metrics(run_dir)
    assert rows[0]["loss"] == pytest.approx(math.log(2), rel=1e-5)
    assert rows[-1]["preference/rewards/margin"] != 0.0
    assert (run_dir / "model" / "adapter_model.safetensors").exists()


def test_run_directory_layout(tmp_path):
    config = tiny_run(tmp_path, [source("demonstration", "sft", "demonstrations.jsonl")], steps=2)
    run_dir = train(config)
    assert (run_dir / "config.yaml").exists()
    assert (run_dir / "model" / "model.safetensors").exists()
    assert len(read_metrics(run_dir)) == 2
    # the output initialises a second run (sequential recipes such as SFT then DPO)
    second = tiny_run(tmp_path / "b", [source("preference", "dpo-sigmoid", "preferences.jsonl")], steps=1)
    second.model.name = str(run_dir)
    assert read_metrics(train(second))[0]["loss"] == pytest.approx(math.log(2), rel=1e-5)


def test_diagnostics_run_on_the_first_every_nth_and_last_step(tmp_path):
    """Plain SFT needs pi_ref only for its diagnostics: steps 1, 3, 6 and 7 of 7 with
    diagnostics_every 3; DPO needs it for its loss, so every step has its rewards."""
    sources = [source("demonstration", "sft", "demonstrations.jsonl"),
               source("preference", "dpo-sigmoid", "preferences.jsonl")]
    _, rows = losses_of(tmp_path, sources, steps=7, diagnostics_every=3)
    with_sft = [r["step"] for r in rows if "demonstration/rewards/implicit" in r]
    assert with_sft == [1, 3, 6, 7]
    assert [r["step"] for r in rows if "demonstration/kl/ref" in r] == with_sft
    assert all("preference/rewards/margin" in r for r in rows)
    with pytest.raises(ValueError, match="diagnostics_every"):
        losses_of(tmp_path / "bad", sources, steps=1, diagnostics_every=0)


def test_diagnostics_off_skips_the_reference_pass_for_sft(tmp_path):
    _, rows = losses_of(tmp_path, [source("demonstration", "sft", "demonstrations.jsonl")], steps=1,
                        diagnostics=False)
    assert "demonstration/rewards/implicit" not in rows[0] and "demonstration/kl/ref" not in rows[0]
