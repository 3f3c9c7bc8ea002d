"""A reward function for the multi-process dynamic-sampling test: the completion's length for
words starting with a-m, 0 for the others, so only some groups (different ones on each process)
have a reward signal."""


def early_length(completions, word, **kwargs) -> list[float]:
    return [float(len(c[0]["content"])) if w[0] < "n" else 0.0 for c, w in zip(completions, word, strict=True)]
