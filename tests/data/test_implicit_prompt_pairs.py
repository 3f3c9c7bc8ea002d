"""Preference pairs with an implicit prompt (TRL's format for e.g. Anthropic HH): no `prompt`
field; the prompt is the longest common prefix of `chosen` and `rejected` (TRL's `extract_prompt`)."""

import json
import math

import pytest

from tests.train.helpers import tiny_run
from unift.data.records import RecordError, parse_record
from unift.data.tokenize import tokenize_pair
from unift.models import load_tokenizer
from unift.train.metrics import read_metrics
from unift.train.run import train

USER = {"role": "user", "content": "What color is the sky?"}
BLUE = {"role": "assistant", "content": "It is blue."}
GREEN = {"role": "assistant", "content": "It is green."}


def pair(chosen, rejected, where="pairs.jsonl:3"):
    return parse_record({"chosen": chosen, "rejected": rejected}, "preference", where)


def test_the_shared_opening_messages_are_the_prompt():
    # TRL's extract_prompt docstring example: prompt [user], chosen [blue], rejected [green]
    record = pair([USER, BLUE], [USER, GREEN])
    explicit = parse_record({"prompt": [USER], "chosen": [BLUE], "rejected": [GREEN]}, "preference", "pairs.jsonl:3")
    assert record == explicit


def test_a_longer_shared_conversation_is_all_prompt():
    follow = {"role": "user", "content": "And at night?"}
    dark, light = {"role": "assistant", "content": "Dark."}, {"role": "assistant", "content": "Bright."}
    record = pair([USER, BLUE, follow, dark], [USER, BLUE, follow, light])
    assert record.prompt == [USER, BLUE, follow]
    assert (record.chosen, record.rejected) == ([dark], [light])


def test_text_pairs_split_before_the_space():
    # common prefix "The sky is " (11 characters); TRL steps back over its final space, which
    # opens both completions: prompt "The sky is", chosen " blue.", rejected " green."
    record = pair("The sky is blue.", "The sky is green.")
    assert (record.prompt, record.chosen, record.rejected) == ("The sky is", " blue.", " green.")


def test_both_rows_share_the_prompt_tokens_and_train_only_the_replies():
    tok = load_tokenizer()
    record = pair([USER, BLUE], [USER, GREEN])
    chosen = tokenize_pair(tok, record.prompt, record.chosen, 512)
    rejected = tokenize_pair(tok, record.prompt, record.rejected, 512)
    assert chosen.prompt_ids == rejected.prompt_ids
    assert tok.decode(chosen.prompt_ids).endswith("What color is the sky?<|im_end|>\n<|im_start|>assistant\n")
    assert tok.decode(chosen.completion_ids) == "It is blue.<|im_end|>"
    assert tok.decode(rejected.completion_ids) == "It is green.<|im_end|>"


@pytest.mark.parametrize("chosen,rejected,needle", [
    ([USER, BLUE], [{"role": "user", "content": "Other?"}, GREEN],
     "missing field 'prompt', and 'chosen' and 'rejected' share no opening message"),
    ("Blue.", "Green.", "share no opening text"),
    ([USER, BLUE], [USER, GREEN, USER, BLUE], "field 'rejected'[2]: role 'user' after the implicit prompt"),
    ([USER, BLUE, USER], [USER, GREEN], "field 'chosen'[2]: role 'user' after the implicit prompt"),
    ([USER, BLUE], [USER, BLUE, USER, GREEN], "field 'chosen' has no reply after the implicit prompt (its first "
                                              "2 messages"),
    ([USER, BLUE], [USER, BLUE], "fields 'chosen' and 'rejected' are identical"),
    ([USER, BLUE], "It is green.", "must both be text or both chat messages"),
    ([USER, {"role": "assistant"}], [USER, GREEN], "field 'chosen'[1]: a chat message needs string 'role' and"),
])
def test_bad_pairs_name_the_line_and_field(chosen, rejected, needle):
    with pytest.raises(RecordError, match=r"^pairs.jsonl:3: ") as err:
        pair(chosen, rejected)
    assert needle in str(err.value)


def test_implicit_pairs_train_with_dpo(tmp_path):
    rows = [(f"What is {a} + {a}?", str(2 * a), str(2 * a + 1)) for a in range(1, 9)]
    path = tmp_path / "hh.jsonl"
    path.write_text("".join(json.dumps({
        "chosen": [{"role": "user", "content": q}, {"role": "assistant", "content": good}],
        "rejected": [{"role": "user", "content": q}, {"role": "assistant", "content": bad}]}) + "\n"
        for q, good, bad in rows))
    config = tiny_run(tmp_path, [{"kind": "preference", "objective": "dpo-sigmoid", "path": str(path),
                                  "beta": 0.1}], steps=4, **{"optim.lr": 2e-3, "optim.schedule": "constant"})
    metrics = read_metrics(train(config))
    assert metrics[0]["loss"] == pytest.approx(math.log(2), rel=1e-5)  # pi = pi_ref at step 1: -log sigma(0)
    assert metrics[-1]["preference/rewards/margin"] > 0
