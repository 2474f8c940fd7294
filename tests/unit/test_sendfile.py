"""X-Sendfile units: Range parsing, conditional requests, where paths resolve, the setting."""
import logging

import pytest

from proxy.runtime import DirectorSettings
from proxy.sendfile import RangeNotSatisfiable, SendfileRoot, not_modified, requested_file, sendfile_root, single_range


@pytest.mark.parametrize("value, expected", [
    (b"bytes=0-9", (0, 9)),
    (b"bytes=5-", (5, 99)),
    (b"bytes=-10", (90, 99)),
    (b"bytes=-500", (0, 99)),  # a suffix longer than the file: all of it
    (b"bytes=90-500", (90, 99)),
    (b"Bytes = 1-2", (1, 2)),
    (b"bytes=0-1,4-5", None),  # several ranges: the whole file
    (b"bytes=9-1", None),  # last before first: invalid, ignored
    (b"items=0-1", None),
    (b"bytes=a-b", None),
    (b"bytes=-", None),
    (b"bytes", None),
])
def test_single_range(value, expected):
    assert single_range(value, 100) == expected


@pytest.mark.parametrize("value", [b"bytes=100-", b"bytes=100-200", b"bytes=-0"])
def test_unsatisfiable_ranges(value):
    with pytest.raises(RangeNotSatisfiable):
        single_range(value, 100)


def test_an_empty_file_ignores_ranges():
    assert single_range(b"bytes=0-", 0) is None


def test_not_modified():
    etag = b'"abc-10"'
    assert not_modified([(b"if-none-match", etag)], etag, 1000)
    assert not_modified([(b"if-none-match", b'"x", W/"abc-10"')], etag, 1000)
    assert not_modified([(b"if-none-match", b"*")], etag, 1000)
    assert not not_modified([(b"if-none-match", b'"x"')], etag, 1000)
    since = b"Thu, 01 Jan 1970 00:16:40 GMT"  # 1000
    assert not_modified([(b"if-modified-since", since)], etag, 1000)
    assert not not_modified([(b"if-modified-since", since)], etag, 1001)
    assert not not_modified([(b"if-modified-since", b"yesterday")], etag, 1000)
    # If-None-Match decides when present, even against a matching date
    assert not not_modified([(b"if-none-match", b'"x"'), (b"if-modified-since", since)], etag, 1000)


def test_paths_resolve_inside_the_root_only(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "f").write_text("x")
    (root / "out").symlink_to(tmp_path)
    files = SendfileRoot("d", str(root))
    assert files.resolve(str(root / "a" / "f").encode()) == str(root / "a" / "f")
    assert files.resolve(b"a/f") == str(root / "a" / "f")
    assert files.resolve(b"a/../a/f") == str(root / "a" / "f")
    for outside in (b"../x", b"/etc/passwd", b"out/x", b"", str(root).encode(), b"a/f\x00", str(root).encode() + b"2/x"):
        assert files.resolve(outside) is None, outside


def test_the_header_and_the_setting():
    assert requested_file([(b"x-a", b"1"), (b"x-sendfile", b"/f")]) == b"/f"
    assert requested_file([(b"x-a", b"1")]) is None
    assert sendfile_root("d", DirectorSettings(x_sendfile_root="/tmp"), None) is None  # not allowed
    allowed = DirectorSettings(allow_x_sendfile=True, x_sendfile_root="/tmp")
    first = sendfile_root("d", allowed, None)
    assert first is not None and sendfile_root("d", allowed, first) is first


def test_a_root_that_is_no_directory_is_logged_once(tmp_path):
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("director.proxy")
    logger.addHandler(handler)
    try:
        settings = DirectorSettings(allow_x_sendfile=True, x_sendfile_root=str(tmp_path / "gone"))
        first = sendfile_root("d", settings, None)
        sendfile_root("d", settings, first)  # a reload with the same setting
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == [
        f"director d: x_sendfile_root {tmp_path / 'gone'} is not a directory: every X-Sendfile answer is 404"]
