"""Continuing from a LoRA run (`model.name: <LoRA run dir>`, e.g. SFT with LoRA, then DPO): the
previous adapter is merged into its base, and that merged network, the previous run's final
policy, is both the start and pi_ref; the new run's `model.lora` is applied to it (not
ignored), or all weights train without one. A PEFT model kept as loaded would instead train
the old adapter and make pi_ref the original base (adapters disabled)."""

import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from tests.train.helpers import source, tiny_run
from unift import models
from unift.config import LoraSpec
from unift.train.run import build_policy, train

FAST = {"optim.warmup_steps": 0, "optim.schedule": "constant", "precision": "fp32"}
IDS = torch.tensor([[1, 17, 42, 7, 99, 3, 250]])  # (1, T) any tokens


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """Three SFT steps of a rank-4 LoRA at a high LR on the tiny model: adapters far from 0."""
    config = tiny_run(tmp_path_factory.mktemp("lora"), [source("demonstration", "sft", "demonstrations.jsonl")],
                      steps=3, **{"optim.lr": 1e-2, **FAST})
    config.model.lora = LoraSpec(r=4, alpha=8)
    return train(config)


@pytest.fixture(scope="module")
def lora_policy(lora_run):
    """The LoRA run's final policy, as PEFT loads it (base + adapter, unmerged): the reference
    the next run must have."""
    base, _ = models.load("tiny")
    return PeftModel.from_pretrained(base, lora_run / "model").eval()


def _continued(tmp_path, lora_run, lora: LoraSpec | None, lr: float = 1e-3):
    config = tiny_run(tmp_path, [source("preference", "dpo-sigmoid", "preferences.jsonl")], steps=1,
                      **{"optim.lr": lr, **FAST})
    config.model.name = str(lora_run)
    config.model.lora = lora
    return config


def test_a_lora_run_names_the_base_it_can_be_rebuilt_from(lora_run, lora_policy):
    adapter = json.loads((lora_run / "model" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "tiny"  # PEFT finds no name for a built model
    base, _ = models.load("tiny")
    assert (logits(lora_policy) - logits(base)).abs().max() > 1e-2, "3 steps at lr 1e-2 should move the policy"


def test_a_new_lora_trains_on_the_merged_run_which_is_the_reference(tmp_path, lora_run, lora_policy):
    policy, _, _ = build_policy(_continued(tmp_path, lora_run, LoraSpec(r=2, alpha=4)))
    assert models.is_peft(policy)
    assert policy.peft_config["default"].r == 2  # this run's model.lora, not the previous rank 4
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    want = logits(lora_policy)
    reference = models.ReferencePolicy(policy)
    with reference.model() as ref:
        torch.testing.assert_close(logits(ref), want, rtol=0, atol=1e-4)  # pi_ref: the merged LoRA run
    torch.testing.assert_close(logits(policy), want, rtol=0, atol=1e-4)  # new adapters start at 0


def test_without_a_new_lora_all_weights_train_from_the_merged_run(tmp_path, lora_run, lora_policy):
    policy, _, _ = build_policy(_continued(tmp_path, lora_run, None))
    assert not models.is_peft(policy)
    assert all(p.requires_grad for p in policy.parameters())
    torch.testing.assert_close(logits(policy), logits(lora_policy), rtol=0, atol=1e-4)
    with models.ReferencePolicy(policy).model() as ref:
        torch.testing.assert_close(logits(ref), logits(lora_policy), rtol=0, atol=1e-4)


def test_a_lora_run_on_a_lora_run_saves_full_merged_weights(tmp_path, lora_run, lora_policy):
    """Its adapters sit on weights no directory holds, so model/ is the merged model: it loads
    with plain transformers, and after one step at a negligible LR it is the first run's policy."""
    second = train(_continued(tmp_path, lora_run, LoraSpec(r=2, alpha=4), lr=1e-30))
    assert not (second / "model" / "adapter_config.json").exists()
    loaded = AutoModelForCausalLM.from_pretrained(second / "model")
    torch.testing.assert_close(logits(loaded), logits(lora_policy), rtol=0, atol=1e-4)


def test_unift_eval_reads_a_lora_run_directory(lora_run, tmp_path, capsys):
    """`unift eval RUN_DIR` on a LoRA run evaluates the adapter merged into its base (model/ holds
    only the adapter, which `models.load` alone refuses)."""
    from unift.evaluate import main

    assert main([str(lora_run), "--task", "countdown", "--n", "2", "--max-new-tokens", "2",
                 "--out", str(tmp_path)]) == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "eval.json").read_text())
    assert record["model"] == str(lora_run) and record["settings"]["n"] == 2
    assert all(0.0 <= r["pass@1"] <= 1.0 for r in record["results"].values()) and record["results"]
