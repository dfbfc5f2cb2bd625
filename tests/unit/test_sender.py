"""The sender record's file (``NAME-sender.json``, read by ``tcplab tsg``)."""
import json

import pytest

from tcplab.errors import TcplabError
from tcplab.observe.sender import TRACED, SenderSample, load, save

SAMPLES = [SenderSample(1.5, ("198.18.0.1", 40000), ("198.18.0.2", 5001), 10, None, 0.04, 65535, 1, 14481),
           SenderSample(1.6, ("2001:db8::1", 40000), ("2001:db8::2", 5001), 20, 7, 0.041)]


def test_a_saved_record_loads_as_it_was(tmp_path):
    save(tmp_path / "c-sender.json", SAMPLES, TRACED)
    assert load(tmp_path / "c-sender.json") == (SAMPLES, TRACED)


def test_a_record_of_one_dict_per_sample_still_loads(tmp_path):
    """tcplab 0.2 wrote each sample as a dict."""
    from dataclasses import asdict
    (tmp_path / "old.json").write_text(json.dumps({"source": TRACED, "samples": [asdict(s) for s in SAMPLES]}))
    assert load(tmp_path / "old.json") == (SAMPLES, TRACED)


def test_a_file_that_is_no_record_names_what_writes_one(tmp_path):
    (tmp_path / "x.json").write_text('{"samples": 3}')
    with pytest.raises(TcplabError, match="not a tcplab sender record .*written by a tcplab capture"):
        load(tmp_path / "x.json")
