"""Snippets of ticket text shown to people: masked before the cut, cut on a word boundary, within the limit."""

from __future__ import annotations

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
