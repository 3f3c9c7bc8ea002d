"""Bounded memory per record (docs/RELIABILITY.md, "Inputs"): a record over `max_record_chars`
is refused, naming its file and line, before it is tokenised (tokenising a 50 MB record took
over 10 GB); reading it stays within a few times the cap."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.train.helpers import ROOT
from unift.data.records import RecordError, load_jsonl

# a child process measures its own peak memory (ru_maxrss, KiB on Linux) around one `unift train`,
# with the libraries a run imports anyway loaded first (datasets alone, with pandas and pyarrow,
# takes ~90 MB): what is measured is the record's reading
CHILD = """
import resource, sys
import datasets, transformers
from unift.train import run
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
code = run.main(sys.argv[1:])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(code, (after - before) * 1024)
"""


def test_a_50_mb_record_is_refused_within_1_gb(tmp_path):
    path = tmp_path / "big.jsonl"
    with path.open("w") as f:
        f.write(json.dumps({"prompt": "p", "completion": "c"}) + "\n")
        f.write('{"prompt": "p", "completion": "' + "word " * 10_000_000 + '"}\n')  # 50 MB
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"model": {"name": "tiny"}, "steps": 1, "output_dir": str(tmp_path / "run"),
                                  "sources": [{"kind": "demonstration", "objective": "sft", "path": str(path)}]}))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(config)], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    code, extra = proc.stdout.split()
    assert int(code) == 2
    assert proc.stderr.strip() == (f"unift train: error: {path}:2: the line is over 1,204,096 characters; "
                                   "max_record_chars (200,000) bounds a record's text")
    assert int(extra) < 1 << 30, f"{int(extra) / 2**20:.0f} MB"
    assert int(extra) < 64 << 20  # in fact: a few MB (a line is read up to 4 bytes x 6 x the cap)


def test_the_cap_counts_characters_of_text(tmp_path):
    path = tmp_path / "data.jsonl"
    rows = [{"prompt": "p" * 60, "completion": "c" * 40},  # 100 characters: at the cap
            {"messages": [{"role": "user", "content": "q" * 60}, {"role": "assistant", "content": "a" * 41}]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(RecordError, match=r"data.jsonl:2: the record has 101 characters of text, over "
                                          r"max_record_chars \(100\); shorten it or raise max_record_chars"):
        load_jsonl(path, "demonstration", max_chars=100)
    assert len(load_jsonl(path, "demonstration", max_chars=101)) == 2
    assert len(load_jsonl(path, "demonstration", max_chars=None)) == 2


def test_escaped_text_fits_the_line_allowance(tmp_path):
    """JSON may write each character as a 6-character escape: a record at the cap still reads."""
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"prompt": "\u00e9" * 900, "completion": "\u00e8" * 100}) + "\n")  # \u00e9 x 900
    assert len(path.read_text()) > 6000
    (rec,) = load_jsonl(path, "demonstration", max_chars=1000)
    assert rec.prompt == "\u00e9" * 900


def test_max_record_chars_reaches_the_loader(tmp_path, capsys):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"prompt": "p" * 50, "completion": "c" * 50}) + "\n")
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"model": {"name": "tiny"}, "output_dir": str(tmp_path / "run"),
                                  "sources": [{"kind": "demonstration", "objective": "sft", "path": str(path)}]}))
    from unift.train import run

    assert run.main([str(config), "max_record_chars=99"]) == 2
    assert "the record has 100 characters of text, over max_record_chars (99)" in capsys.readouterr().err
