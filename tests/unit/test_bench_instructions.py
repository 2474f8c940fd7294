"""bench/instructions.py reads callgrind's dumps (`make instructions`)."""
import pytest

from bench.instructions import total_instructions

DUMP = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 25113
cmd:  /work/main/.venv/bin/python manage.py runproxy
part: 2
desc: Trigger: Client Request: requests
events: Ir
summary: 901469212
fn=(1) 0x0000000000021090
0 3
totals: 901469212
"""


def test_the_total_is_read_from_a_dump(tmp_path):
    dump = tmp_path / "callgrind.25113.2"
    dump.write_text(DUMP)
    assert total_instructions(dump) == 901_469_212


def test_a_dump_without_a_total_is_refused_by_name(tmp_path):
    dump = tmp_path / "callgrind.25113.3"
    dump.write_text("# callgrind format\nevents: Ir\n")
    with pytest.raises(SystemExit, match="no total in .*callgrind.25113.3"):
        total_instructions(dump)
