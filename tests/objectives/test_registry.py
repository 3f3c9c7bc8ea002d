import torch

import unift.objectives as obj

SEQ = {
    "policy": torch.tensor([-1.0, -5.0], requires_grad=True),
    "ref": torch.tensor([-3.0, -3.0]),
}


def _call(name, fn):
    p, r = SEQ["policy"], SEQ["ref"]
    if name == "sft":
        return fn(torch.tensor([[-1.0, -2.0]], requires_grad=True), torch.ones(1, 2))
    if name.startswith("dpo") or name == "una-pairwise":
        return fn(p, p.flip(0), r, r, 0.1)
    if name.startswith("una-binary"):
        return fn(p, r, torch.tensor([1.0, 0.0]), 0.1)
    if name == "una-score-mse":
        return fn(p, r, torch.tensor([0.9, 0.2]), 0.1)
    return fn(p, r, 0.1)


def test_every_registered_loss_returns_scalar_and_detached_stats():
    expected = {
        "sft",
        "dpo-sigmoid",
        "dpo-ipo",
        "dpo-hinge",
        "una-pairwise",
        "una-binary-mse",
        "una-binary-bce",
        "una-score-mse",
        "uft-implicit-mse",
        "uft-implicit-bce",
    }
    assert expected <= set(obj.LOSSES)
    for name, fn in obj.LOSSES.items():
        loss, stats = _call(name, fn)
        assert loss.dim() == 0 and loss.requires_grad, name
        assert stats and all("/" in k or k in ("nll", "tokens") for k in stats), name
        for key, value in stats.items():
            assert value.dim() == 0 and not value.requires_grad, (name, key)


def test_public_names_are_exported():
    for name in obj.__all__:
        assert hasattr(obj, name)
