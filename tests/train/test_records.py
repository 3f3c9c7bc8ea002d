import json

import pytest

from unift.data.records import RecordError, from_rows, load_jsonl


def write(tmp_path, rows, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_example_files_load(tmp_path):
    from tests.train.helpers import DATA

    assert len(load_jsonl(DATA / "demonstrations.jsonl", "demonstration")) == 8
    assert len(load_jsonl(DATA / "preferences.jsonl", "preference")) == 8
    assert len(load_jsonl(DATA / "binary.jsonl", "binary")) == 16
    assert len(load_jsonl(DATA / "score.jsonl", "score")) == 16


def test_messages_split_into_prompt_and_completion():
    (rec,) = from_rows([{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}],
                       "demonstration")
    assert rec.prompt == [{"role": "user", "content": "q"}]
    assert rec.completion == [{"role": "assistant", "content": "a"}]


@pytest.mark.parametrize(
    "kind,row,needle",
    [
        ("preference", {"prompt": "p", "chosen": "c"}, "missing field 'rejected'"),
        ("binary", {"prompt": "p", "completion": "c", "label": "yes"}, "field 'label'"),
        ("score", {"prompt": "p", "completion": "c", "score": 3.0}, "field 'score' must lie in [0, 1]"),
        ("score", {"prompt": "p", "completion": "c", "score": float("nan")}, "field 'score'"),
        ("demonstration", {"prompt": [{"role": "user"}], "completion": "c"}, "field 'prompt'[0]"),
        ("demonstration", {"messages": [{"role": "user", "content": "q"}]}, "field 'messages'"),
        ("demonstration", {"prompt": "p", "completion": 5}, "field 'completion'"),
    ],
)
def test_bad_row_names_file_line_and_field(tmp_path, kind, row, needle):
    good = {"demonstration": {"prompt": "p", "completion": "c"},
            "preference": {"prompt": "p", "chosen": "c", "rejected": "r"},
            "binary": {"prompt": "p", "completion": "c", "label": True},
            "score": {"prompt": "p", "completion": "c", "score": 0.5}}[kind]
    path = write(tmp_path, [good, good, row])
    with pytest.raises(RecordError) as err:
        load_jsonl(path, kind)
    assert f"{path}:3" in str(err.value)
    assert needle in str(err.value)


def test_invalid_json_names_line(tmp_path):
    path = write(tmp_path, [{"prompt": "p", "completion": "c"}, "{not json"])
    with pytest.raises(RecordError, match=r"data.jsonl:2: invalid JSON"):
        load_jsonl(path, "demonstration")


def test_blank_lines_are_the_only_thing_skipped(tmp_path):
    path = write(tmp_path, [{"prompt": "p", "completion": "c"}, "", {"prompt": "q", "completion": "d"}])
    assert [r.where.rsplit(":", 1)[1] for r in load_jsonl(path, "demonstration")] == ["1", "3"]


def test_datasets_objects_load():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([{"prompt": "p", "completion": "c", "label": False}])
    (rec,) = from_rows(ds, "binary", "ds")
    assert rec.target == 0.0
