"""Reducing an answer to its final short answer, and one spelling per answer."""

import pytest

from chat.engine.shortanswer import extract, normalise


@pytest.mark.parametrize(
    "text, short",
    [
        ("42", "42"),
        ("The answer is 42.", "42"),
        ("5 times 4 is 20.", "20"),
        ("**Final answer:** Canberra", "Canberra"),
        ("Yes, 17 is prime: it has no divisor but 1 and itself, as checking 2, 3 shows.", "Yes"),
        ("B) Paris", "B"),
        ("I think option C is right, since the others contradict the premise.", "C"),
        ("So we get $\\boxed{7}$ in the end.", "7"),
        ("Paris", "Paris"),
        (
            "Canberra was chosen in 1908 as a compromise between Sydney and Melbourne, and "
            "Parliament moved there in 1927 after years of building.",
            None,
        ),
    ],
)
def test_extract(text, short):
    assert extract(text) == short


@pytest.mark.parametrize(
    "given, same",
    [
        ("Forty-two", "42"),
        ("42.0", "42"),
        ("1,000", "1000"),
        ("The Eiffel Tower.", "eiffel tower"),
        ("(b)", "B"),
        ("Yes", "yes"),
    ],
)
def test_normalise(given, same):
    assert normalise(given) == same
