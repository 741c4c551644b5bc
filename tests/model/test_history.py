import gzip
from pathlib import Path

import pytest

from hubpulse_common.errors import InputError
from hubpulse_common.history import load_history

HEADER = (
    "snapshot_date,model_id,downloads,downloads_all_time,likes,pipeline_tag,library_name,created_at,trending_rank\n"
)
GOOD = "2025-01-01,a/b,10,100,3,text-generation,transformers,2024-01-01T00:00:00.000Z,4\n"


def _write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_loads_typed_frame_from_gzip_with_extra_and_missing_columns(tmp_path):
    path = tmp_path / "h.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("snapshot_date,model_id,downloads,likes,extra\n2025-01-01,a/b,10,,x\n2025-01-02,a/b,12,1,y\n")
    frame = load_history(path)
    assert list(frame.columns)[:5] == ["snapshot_date", "model_id", "downloads", "downloads_all_time", "likes"]
    assert "extra" not in frame.columns
    assert frame["likes"].isna().iloc[0]
    assert frame["trending_rank"].isna().all()
    assert str(frame["snapshot_date"].dtype) == "datetime64[ns]"


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("2025-01-02,a/b,abc,100,3,,,,\n", "data.csv line 3, column downloads: 'abc' is not an integer"),
        ("2025-01-02,a/b,10,100,1.5,,,,\n", "data.csv line 3, column likes: '1.5' is not an integer"),
        ("2025-13-02,a/b,10,100,1,,,,\n", "data.csv line 3, column snapshot_date: '2025-13-02' is not a date"),
        ("2025-01-02,a/b,10,100,1,,,yesterday,\n", "data.csv line 3, column created_at: 'yesterday'"),
        ("2025-01-02,a/b,10,100,1,,,,0\n", "data.csv line 3, column trending_rank: '0' is below 1"),
        ("2025-01-01,a/b,10,100,1,,,,\n", "data.csv line 3, column model_id: 'a/b' appears twice"),
    ],
)
def test_malformed_cell_names_file_line_and_column(tmp_path, row, expected):
    with pytest.raises(InputError, match="^" + expected.replace("(", r"\(").replace(")", r"\)")):
        load_history(_write(tmp_path, HEADER + GOOD + row))


def test_missing_required_column_and_unreadable_file(tmp_path):
    with pytest.raises(InputError, match=r"data\.csv line 1: required column 'likes'"):
        load_history(_write(tmp_path, "snapshot_date,model_id,downloads\n2025-01-01,a/b,1\n"))
    with pytest.raises(InputError, match=r"data\.csv: the file is empty"):
        load_history(_write(tmp_path, ""))
    with pytest.raises(InputError, match="no such history file"):
        load_history(tmp_path / "absent.csv")
