import torch
import torch.nn.functional as F

from unift.train.logprobs import _Entropy


def test_chunked_entropy_matches_the_naive_graph_in_value_and_gradient():
    torch.manual_seed(0)
    logits = torch.randn(300, 50, requires_grad=True)  # 300 rows: more than one chunk
    weights = torch.randn(300)
    logp = F.log_softmax(logits, -1)
    naive = -(logp.exp() * logp).sum(-1)
    (naive * weights).sum().backward()
    expected = logits.grad.clone()
    logits.grad = None
    chunked = _Entropy.apply(logits)
    (chunked * weights).sum().backward()
    torch.testing.assert_close(chunked, naive, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits.grad, expected, rtol=1e-4, atol=1e-6)
    # uniform logits over 50 classes: entropy log 50, gradient 0
    flat = torch.zeros(2, 50, requires_grad=True)
    h = _Entropy.apply(flat)
    h.sum().backward()
    torch.testing.assert_close(h, torch.full((2,), torch.log(torch.tensor(50.0)).item()))
    assert flat.grad.abs().max() < 1e-6
