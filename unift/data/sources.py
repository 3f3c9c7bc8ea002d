"""Where a source's records come from: a file, or a `datasets.Dataset` handed over from Python.

    data.jsonl                   unift's own reader: an error names the line (`records.read_jsonl`)
    data.json / .parquet / .csv  `datasets.load_dataset(FORMAT, data_files=PATH, split="train")`:
                                 an error names the row (from 0, as `dataset[i]`)
    SourceConfig(dataset=ds)     the rows of a `datasets.Dataset`, checked the same way

Every row goes through `records.parse_record`: the same columns, checks and messages whatever the
source. Only local files are read; `datasets` downloads nothing for them (its json, parquet and csv
builders are part of the package).
"""

from __future__ import annotations

from pathlib import Path

from unift.data.records import MAX_RECORD_CHARS, Record, RecordError, from_rows, load_jsonl

DATASET_FORMATS = {".json": "json", ".parquet": "parquet", ".csv": "csv"}
"""File suffix -> `datasets.load_dataset` builder; any other suffix is read as JSON lines."""


def load_records(path: str | Path | None, kind: str, max_chars: int | None = MAX_RECORD_CHARS, *,
                 dataset=None, name: str = "dataset", assistant_turns: str = "all") -> list[Record]:
    """Every record of a source, validated: from `dataset` (a `datasets.Dataset`, rows named
    '<name>, row <i>') if given, else from the file at `path` by its suffix (`DATASET_FORMATS`)."""
    if dataset is not None:
        where, rows = name, check_dataset(dataset, name)
    else:
        path = Path(path)
        fmt = DATASET_FORMATS.get(path.suffix.lower())
        if fmt is None:
            return load_jsonl(path, kind, max_chars, assistant_turns)
        where, rows = str(path), read_dataset(path, fmt)
    records = from_rows(rows, kind, where, max_chars, assistant_turns)
    if not records:
        raise RecordError(f"{where}: no records")
    return records


def check_dataset(dataset, name: str):
    """`dataset` if it is a `datasets.Dataset`, else a RecordError saying what to pass instead."""
    import datasets

    if isinstance(dataset, datasets.DatasetDict):
        raise RecordError(f"{name}: a DatasetDict of splits ({', '.join(dataset)}); pass one split, "
                          f"e.g. dataset[{next(iter(dataset), 'train')!r}]")
    if not isinstance(dataset, datasets.Dataset):  # an IterableDataset has no length to shuffle by
        raise RecordError(f"{name}: expected a datasets.Dataset, got {type(dataset).__name__} "
                          "(in YAML, give the data as a file: path)")
    return dataset


def read_dataset(path: Path, fmt: str):
    """A local file through `datasets.load_dataset` (its Arrow cache under HF_DATASETS_CACHE),
    with datasets' progress bars and log lines off: the run shows one progress display, and a
    failure is one RecordError naming the file."""
    if not path.is_file():
        raise RecordError(f"{path}: {'is a directory, not a data file' if path.is_dir() else 'no such file'}")
    if path.stat().st_size == 0:
        raise RecordError(f"{path}: no records")
    import datasets
    from datasets.utils import are_progress_bars_disabled
    from datasets.utils import logging as ds_logging

    bars, level = are_progress_bars_disabled(), ds_logging.get_verbosity()
    # offline for the call: even for a local file, load_dataset pings the Hub to count a "download"
    saved = {key: getattr(datasets.config, key) for key in _OFFLINE}
    datasets.disable_progress_bars()
    ds_logging.set_verbosity(ds_logging.CRITICAL)  # it logs the error it then raises
    try:
        for key, value in _OFFLINE.items():
            setattr(datasets.config, key, value)
        return datasets.load_dataset(fmt, data_files=str(path), split="train")
    except Exception as err:  # pyarrow, pandas, json: each format fails its own way
        cause = err.__cause__ or err
        text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise RecordError(f"{path}: datasets cannot read it as {fmt}: {text}") from None
    finally:
        for key, value in saved.items():
            setattr(datasets.config, key, value)
        ds_logging.set_verbosity(level)
        if not bars:
            datasets.enable_progress_bars()


_OFFLINE = {"HF_HUB_OFFLINE": True, "HF_DATASETS_OFFLINE": True, "HF_UPDATE_DOWNLOAD_COUNTS": False}
"""`datasets.config` settings while reading a file: no request leaves the machine."""


def describe(dataset) -> str:
    """A `datasets.Dataset` in a config dump: its fingerprint (a hash of its content and history,
    so that resume can tell a changed dataset; first, where a shortened message still shows it),
    rows and columns."""
    rows = getattr(dataset, "num_rows", None)
    if rows is None:
        return f"<{type(dataset).__name__}>"
    columns = ", ".join(getattr(dataset, "column_names", []) or [])
    return f"<datasets.Dataset {getattr(dataset, '_fingerprint', '?')}: {rows} rows ({columns})>"
