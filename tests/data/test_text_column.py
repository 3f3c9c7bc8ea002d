"""A `text` column is plain language modelling, as TRL's SFTTrainer trains it: the loss covers
every token of the text and the EOS token appended to it (the first token has nothing before it
to be predicted from)."""

import pytest
import torch
import torch.nn.functional as F

from tests.train.helpers import tiny_run
from unift.data.records import RecordError, from_rows, parse_record
from unift.data.tokenize import collate, tokenize_pair
from unift.models import load, load_tokenizer
from unift.train.logprobs import token_logps
from unift.train.metrics import read_metrics
from unift.train.run import train


def test_text_is_a_completion_without_prompt():
    (record,) = from_rows([{"text": "Hello world"}], "demonstration")
    assert record.prompt == "" and record.completion == "Hello world"


def test_every_token_carries_the_loss():
    tok = load_tokenizer()
    (record,) = from_rows([{"text": "Hello world"}], "demonstration")
    batch = collate([tokenize_pair(tok, record.prompt, record.completion, 64)], tok.pad_token_id)
    # "Hello world" is 2 tokens (Hello, Ġworld), then the EOS <|im_end|> (id 2): all 3 in the mask
    assert tok.convert_ids_to_tokens(batch.input_ids[0]) == ["Hello", "Ġworld", "<|im_end|>"]
    assert batch.loss_mask[0].tolist() == [True, True, True]


def test_the_loss_is_the_causal_lm_loss_over_the_whole_text():
    """unift's per-token NLL equals transformers' own LM loss (labels = input_ids, shifted inside:
    what TRL trains on a `text` column): mean over the 2 predicted tokens Ġworld and <|im_end|>."""
    model, tok = load("tiny")
    (record,) = from_rows([{"text": "Hello world"}], "demonstration")
    batch = collate([tokenize_pair(tok, record.prompt, record.completion, 64)], tok.pad_token_id)
    with torch.no_grad():
        out = token_logps(model, batch)
        lm_loss = model(input_ids=batch.input_ids, labels=batch.input_ids).loss
        logits = model(input_ids=batch.input_ids).logits[0].float()
    assert int(out.mask.sum()) == 2
    nll = -out.logps[out.mask].mean()
    assert float(nll) == pytest.approx(float(lm_loss), rel=1e-5)
    ids = batch.input_ids[0]
    # position 0 (Hello) predicts Ġworld, position 1 predicts <|im_end|>; nothing predicts Hello
    by_hand = (F.cross_entropy(logits[0:1], ids[1:2]) + F.cross_entropy(logits[1:2], ids[2:3])) / 2
    assert float(nll) == pytest.approx(float(by_hand), rel=1e-5)


def test_a_long_text_is_cut_from_the_right():
    tok = load_tokenizer()
    (record,) = from_rows([{"text": "word " * 100}], "demonstration")
    item = tokenize_pair(tok, record.prompt, record.completion, 16)
    assert item.truncated and item.prompt_ids == [] and len(item.completion_ids) == 16
    assert tok.decode(item.completion_ids).startswith("word word")


@pytest.mark.parametrize("row,needle", [
    ({"text": "t", "prompt": "p", "completion": "c"}, "both 'text' and ['prompt', 'completion']"),
    ({"text": "t", "messages": [{"role": "user", "content": "q"}]}, "both 'text' and ['messages']"),
    ({"text": [{"role": "user", "content": "q"}]}, "field 'text' must be a string"),
    ({"text": ""}, "field 'text' is empty"),
])
def test_bad_text_rows_name_the_field(row, needle):
    with pytest.raises(RecordError, match="data.jsonl:4: ") as err:
        parse_record(row, "demonstration", "data.jsonl:4")
    assert needle in str(err.value)


def test_text_is_only_for_demonstrations():
    with pytest.raises(RecordError, match="missing field 'prompt'"):
        parse_record({"text": "t", "completion": "c", "label": True}, "binary", "x:1")


def test_a_text_file_trains(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(f'{{"text": "The number {i} follows {i - 1}."}}\n' for i in range(1, 9)))
    config = tiny_run(tmp_path, [{"kind": "demonstration", "objective": "sft", "path": str(path)}], steps=4,
                      **{"optim.lr": 2e-3, "optim.schedule": "constant"})
    rows = read_metrics(train(config))
    assert rows[-1]["loss"] < rows[0]["loss"]
