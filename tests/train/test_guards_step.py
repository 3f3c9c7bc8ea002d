"""Guards of the training step that compare with an independent computation, so a wrong step
fails (scripts/mutate.py plants each bug and checks that these tests catch it):

- a 2-source mix's gradient is the weighted sum of the single-source gradients;
- the logged `kl/ref` is KL(pi || pi_ref), computed here from the two full softmaxes;
- with LoRA, pi_ref is the adapter-free network: building it stores no second copy of the weights.
"""

import copy
import gc

import pytest
import torch

from tests.train.test_exactness import MODEL, assert_same, differs, gradients, offline
from unift import models
from unift.train.step import encode, train_step


@pytest.fixture(scope="module")
def tiny():
    return models.load(MODEL)


def test_mix_gradient_is_the_weighted_sum_of_single_source_gradients(tiny):
    """0.3 x SFT on demonstrations + 0.7 x DPO on preferences, in one micro-batch: by linearity
    of the backward, grad = 0.3 grad(SFT) + 0.7 grad(DPO), each single source at weight 1."""
    policy, tokenizer = tiny
    sft, demos = offline("demonstration", "sft", "demonstrations.jsonl")
    dpo, prefs = offline("preference", "dpo-sigmoid", "preferences.jsonl")
    g_sft = gradients(policy, [[encode(sft, demos, tokenizer, 128)]])
    g_dpo = gradients(policy, [[encode(dpo, prefs, tokenizer, 128)]])
    sft.weight, dpo.weight = 0.3, 0.7
    mixed = gradients(policy, [[encode(sft, demos, tokenizer, 128), encode(dpo, prefs, tokenizer, 128)]])
    assert_same(mixed, [0.3 * a + 0.7 * b for a, b in zip(g_sft, g_dpo, strict=True)])
    # sensitive: dropping the weights (1 x SFT + 1 x DPO) or one source is visibly wrong
    assert differs(mixed, [a + b for a, b in zip(g_sft, g_dpo, strict=True)])
    assert differs(mixed, [0.3 * a for a in g_sft]) and differs(mixed, [0.7 * b for b in g_dpo])


def _changed(policy, seed: int = 0):
    """Another policy, far enough from `policy` that KL is not symmetric: every weight plus
    N(0, 0.02^2) noise (the size of the tiny init), and logits 20x sharper (final norm x 20)."""
    changed = copy.deepcopy(policy)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in changed.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
        changed.model.norm.weight.mul_(20.0)
    return changed


def _completion_logsoftmax(model, batch) -> torch.Tensor:
    """(B, T-1, V) log-softmax of the next-token logits."""
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    return torch.log_softmax(logits[:, :-1].float(), dim=-1)


def test_kl_ref_metric_is_kl_of_pi_from_pi_ref_over_completion_tokens(tiny):
    """KL(pi || pi_ref) = sum_v pi(v) (log pi(v) - log pi_ref(v)) per completion token, averaged
    over the completion tokens of the batch; the reversed KL(pi_ref || pi) is another number."""
    base, tokenizer = tiny
    src, demos = offline("demonstration", "sft", "demonstrations.jsonl")
    sb = encode(src, demos, tokenizer, 128)
    policy, reference = _changed(base), models.ReferencePolicy(base)
    opt = torch.optim.SGD(policy.parameters(), lr=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    metrics = train_step(policy, reference, [[copy.deepcopy(sb)]], opt, sched, precision="fp32", grad_clip=0.0,
                         diagnostics_ref=True)
    logp, logq = _completion_logsoftmax(policy, sb.batch), _completion_logsoftmax(base, sb.batch)
    mask = sb.batch.loss_mask[:, 1:].float()  # (B, T-1): the completion tokens
    forward = ((logp.exp() * (logp - logq)).sum(-1) * mask).sum() / mask.sum()
    reverse = ((logq.exp() * (logq - logp)).sum(-1) * mask).sum() / mask.sum()
    assert abs(float(forward) - float(reverse)) > 0.2 * float(forward)  # the two directions differ here
    assert metrics[f"{src.name}/kl/ref"] == pytest.approx(float(forward), rel=1e-4)


def _tensor_storage() -> tuple[int, int]:
    """(bytes, count) of the distinct tensor storages reachable by the garbage collector."""
    gc.collect()
    seen = {}
    for obj in gc.get_objects():
        if issubclass(type(obj), torch.Tensor) and not obj.is_meta:  # type(): no __getattr__ calls
            s = obj.untyped_storage()
            seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values()), len(seen)


def _lora(policy):
    return models.apply_lora(copy.deepcopy(policy), r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])


def test_lora_reference_stores_no_copy_of_the_weights(tiny):
    base, tokenizer = tiny
    policy = _lora(base)
    weights = sum(p.numel() * p.element_size() for p in policy.parameters())
    before, _ = _tensor_storage()
    reference = models.ReferencePolicy(policy)
    after, _ = _tensor_storage()
    assert after - before < 0.01 * weights  # a full copy would add ~100%
    with reference.model() as ref_model:
        ptrs = {p.data_ptr() for p in policy.parameters()}
        assert all(p.data_ptr() in ptrs for p in ref_model.parameters())
    # and it is the adapter-free network: once the adapters are nonzero, pi_ref is the base model
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    ids = torch.tensor([tokenizer("The capital of France is Paris.")["input_ids"]])
    with torch.no_grad(), reference.model() as ref_model:
        ref_logits = ref_model(input_ids=ids).logits
    with torch.no_grad():
        torch.testing.assert_close(ref_logits, base(input_ids=ids).logits)
        assert not torch.allclose(policy(input_ids=ids).logits, ref_logits, atol=1e-3)


def test_full_reference_is_a_frozen_copy_of_the_initial_policy(tiny):
    """Without LoRA pi_ref is a copy taken at construction: updating the policy leaves it as it was."""
    base, tokenizer = tiny
    policy = copy.deepcopy(base)
    reference = models.ReferencePolicy(policy)
    with torch.no_grad():
        for p in policy.parameters():
            p.mul_(1.5)
    ids = torch.tensor([tokenizer("The capital of France is Paris.")["input_ids"]])
    with torch.no_grad(), reference.model() as ref_model:
        torch.testing.assert_close(ref_model(input_ids=ids).logits, base(input_ids=ids).logits)
        assert not any(p.requires_grad for p in ref_model.parameters())
