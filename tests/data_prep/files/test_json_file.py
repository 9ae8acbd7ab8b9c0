"""A JSON object read back with errors that name the file, the line and the field."""

import pytest

from data_prep.files.json_file import read_json_object


def test_errors_name_the_file_line_and_field(tmp_path):
    good = tmp_path / "r.json"
    good.write_text('{"a": 1, "b": 2}')
    assert read_json_object(good, ("a", "b")) == {"a": 1, "b": 2}
    with pytest.raises(ValueError, match=r"missing.json: no such file \(a record\)"):
        read_json_object(tmp_path / "missing.json", what="a record")
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,\n "b": }')
    with pytest.raises(KeyError, match=r"bad.json: line 2: not valid JSON"):
        read_json_object(bad, error=KeyError)
    with pytest.raises(ValueError, match=r"r.json: field 'c' is missing \(not a bench file\)"):
        read_json_object(good, ("a", "c"), what="a bench file")
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        read_json_object(listed)
