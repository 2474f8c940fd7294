"""health_check_expected_status parsing and matching."""
import pytest

from balancer.health.expected import ExpectedStatus


@pytest.mark.parametrize("text, inside, outside", [
    ("200", [200], [199, 201, 204, 500]),
    ("200-399", [200, 302, 399], [199, 400, 500]),
    ("200,204", [200, 204], [201, 203, 205]),
    ("200-299, 304", [200, 250, 299, 304], [300, 303, 305]),
    ("100-599", [100, 599], [99, 600]),
])
def test_matches_codes_and_ranges(text, inside, outside):
    expected = ExpectedStatus(text)
    assert all(code in expected for code in inside)
    assert not any(code in expected for code in outside)


def test_none_status_never_matches():
    assert None not in ExpectedStatus("200")


@pytest.mark.parametrize("text, bad_part", [
    ("abc", "abc"),
    ("600", "600"),
    ("300-200", "300-200"),
    ("200,abc", "abc"),
    ("200-", "200-"),
    ("", "''"),
    ("99", "99"),
])
def test_errors_name_the_bad_part(text, bad_part):
    with pytest.raises(ValueError) as info:
        ExpectedStatus(text)
    assert bad_part in str(info.value)


def test_equality_by_codes():
    assert ExpectedStatus("200,201") == ExpectedStatus("200-201")
    assert ExpectedStatus("200") != ExpectedStatus("204")
