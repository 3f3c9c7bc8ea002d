"""Packed log-probs (shared prompts once, no padding) equal the plain padded forward."""

import pytest
import torch

from unift.data.tokenize import Batch
from unift.models import load
from unift.train import logprobs
from unift.train.logprobs import token_logps


def batch_of(rows: list[list[int]], prompt_lengths: list[int]) -> Batch:
    """Right-padded batch; loss on everything after each row's prompt."""
    length = max(map(len, rows))
    ids = torch.zeros(len(rows), length, dtype=torch.long)
    attn = torch.zeros_like(ids)
    loss = torch.zeros_like(ids, dtype=torch.bool)
    for i, (r, p) in enumerate(zip(rows, prompt_lengths, strict=True)):
        ids[i, :len(r)] = torch.tensor(r)
        attn[i, :len(r)] = 1
        loss[i, p:len(r)] = True
    return Batch(ids, attn, loss)


def rows_sharing_prompts():
    g = torch.Generator().manual_seed(0)

    def rand(n):
        return torch.randint(3, 1000, (n,), generator=g).tolist()

    a, b = rand(40), rand(50)  # two prompts of >= 32 tokens: two groups
    rows = [a + rand(7), a + rand(12), b + rand(3), a + rand(1), b + rand(9), rand(20)]
    # the lone row (no shared prefix) and a row sharing only 10 tokens stay whole
    rows.append(a[:10] + rand(25))
    return rows, [40, 40, 50, 40, 50, 5, 10]


def test_groups_share_the_common_prompt_and_keep_a_token_per_row():
    rows, _ = rows_sharing_prompts()
    batch = batch_of(rows, [1] * len(rows))
    groups = logprobs._groups(batch.input_ids, [len(r) for r in rows])
    assert groups == [(40, [0, 1, 3]), (50, [2, 4]), (0, [5]), (0, [6])]
    # the pack holds 40 + 7 + 12 + 1 + 50 + 3 + 9 + 20 + 35 = 177 tokens instead of 307
    ids, positions, _, index = logprobs._pack(batch, [len(r) for r in rows])
    assert ids.shape == positions.shape == (1, 177)
    assert positions[0, 40:47].tolist() == list(range(40, 47))  # row 0's own tokens follow its prompt
    assert index[1, :40].tolist() == index[0, :40].tolist() == list(range(40))  # one copy of prompt a
    # rows equal up to their last token still keep one token of their own
    same = batch_of([[7] * 40, [7] * 40], [1, 1])
    assert logprobs._groups(same.input_ids, [40, 40]) == [(39, [0, 1])]


@pytest.mark.parametrize("eager_max", [logprobs._EAGER_MAX, 0], ids=["matmul-blocks", "sdpa-blocks"])
def test_packed_shared_prefix_logps_and_gradients_equal_the_padded_forward(monkeypatch, eager_max):
    monkeypatch.setattr(logprobs, "_EAGER_MAX", eager_max)
    model, _ = load("tiny")
    rows, prompts = rows_sharing_prompts()
    batch = batch_of(rows, prompts)
    out = {}
    for pack in (True, False):
        model.zero_grad()
        lp = token_logps(model, batch, pack=pack)
        (lp.logps * lp.mask).sum().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters()])
        out[pack] = (lp.logps[lp.mask].detach(), grads)
    torch.testing.assert_close(out[True][0], out[False][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[True][1], out[False][1], atol=1e-5, rtol=1e-4)


def test_packing_holds_under_activation_checkpointing():
    """Checkpointed layers re-run in backward (after `_hidden_states` restored the attention
    name): the re-run must attend within the pack too, or the gradients would be wrong."""
    model, _ = load("tiny")
    rows, prompts = rows_sharing_prompts()
    batch = batch_of(rows, prompts)
    grads = {}
    for checkpointing in (False, True):
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        model.zero_grad()
        lp = token_logps(model, batch, pack=checkpointing)  # plain padded run vs checkpointed pack
        (lp.logps * lp.mask).sum().backward()
        grads[checkpointing] = torch.cat([p.grad.flatten() for p in model.parameters()])
    torch.testing.assert_close(grads[True], grads[False], atol=1e-5, rtol=1e-4)
