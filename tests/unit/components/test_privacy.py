"""Snippets of ticket text shown to people: masked before the cut, cut on a word boundary, within the limit."""

from __future__ import annotations

import random

import pytest

from ticketflow.components import privacy
from ticketflow.components.privacy import ELLIPSIS, mask_personal_data, snippet
from ticketflow.serving import privacy as serving_privacy


def test_serving_still_imports_the_one_masking_function():
    assert serving_privacy.mask_personal_data is privacy.mask_personal_data
    assert serving_privacy.snippet is privacy.snippet


@pytest.mark.parametrize(
    ("text", "max_chars", "expected"),
    [
        ("printer jammed", 20, "printer jammed"),  # fits: unchanged
        ("printer jammed", 14, "printer jammed"),  # exactly the limit
        ("printer jammed on floor 3", 16, "printer jammed…"),  # the space after "jammed" is a boundary
        ("printer jammed on floor 3", 15, "printer jammed…"),  # ellipsis included in the limit
        ("printer jammed on floor 3", 14, "printer…"),
        ("  printer\n\tjammed  ", 20, "printer jammed"),  # whitespace collapsed
        ("Supercalifragilistic printer", 8, "Superca…"),  # one long first word: cut inside it
        ("printer, jammed", 10, "printer…"),  # no comma left dangling before the ellipsis
        ("", 10, ""),
    ],
)
def test_snippet_shortens_on_a_word_boundary(text: str, max_chars: int, expected: str):
    assert snippet(text, max_chars) == expected
    assert len(snippet(text, max_chars)) <= max_chars


def test_snippet_masks_before_the_cut():
    text = "Please reply to priya.s@example.com or ring +1 555 0188 today"
    # Cut first, "priya.s@exa…" would no longer look like an address and would leak.
    assert snippet(text, 27) == "Please reply to [email] or…"
    assert snippet(text, 100) == mask_personal_data(text) == "Please reply to [email] or ring [phone] today"
    assert snippet(text, 100, mask=None) == text  # masking off (cfg.mask_personal_data False)
    assert snippet(text, 100, mask=str.upper) == text.upper()  # the caller's own masking


def test_snippet_needs_room_for_a_character_and_the_ellipsis():
    assert snippet("printer", 2) == "p" + ELLIPSIS
    with pytest.raises(ValueError, match="at least 2"):
        snippet("printer", 1)


@pytest.mark.parametrize("max_chars", [20, 40, 160])
def test_snippet_masks_a_window_exactly_as_the_whole_text(max_chars: int):
    # The snippet masks only a window of a long text; whatever sits across the window's end, the snippet must be
    # the one that masking the whole text and then cutting gives.
    rng = random.Random(max_chars)
    pieces = ["word", "Ticket", "priya.s@example.com", "+1 555 0188", "030 1234567", "2024-05-01", "555-0192 2", "x"]
    for _ in range(300):
        text = " ".join(rng.choice(pieces) for _ in range(rng.randint(1, 80)))
        expected = snippet(mask_personal_data(text), max_chars, mask=None)  # the whole text masked, then cut
        assert snippet(text, max_chars) == expected, text
