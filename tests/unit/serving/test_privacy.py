"""Masking of e-mail addresses and phone numbers, and the numbers of IT tickets it must leave alone."""

from __future__ import annotations

import pytest

from ticketflow.serving.privacy import mask_personal_data

PHONES = [
    "+1 555 0134",
    "(555) 010-4477",
    "555-0192",
    "+49 30 1234567",
    "+44 (0)20 7946 0958",
    "0176 12345678",
    "555.010.4477",
    "+1 (555) 010-4477",
    "+1.555.010.4477",
    "+49-30-1234567",
    "+4930123456",
    "+33 1 23 45 67 89",
    "1-800-555-0199",
    "555 010 4477",
    "555 0134",
    "030 1234567",
    "(0176) 12345678",
    "01.23.45.67.89",
    "01761234567",
]

NOT_PHONES = [
    "2024-05-01",
    "01.05.2024",
    "5/1/2024",
    "05-01-2024",
    "2024-05-01T10:30:00Z",
    "2024-05-01 10:30",
    "01.05.2024 10:30:15",
    "10:30",
    "12:34:56.789012",
    "10.0.0.12",
    "192.168.1.1",
    "192.168.100.200:8080",
    "10.0.0.0/24",
    "3.11.7",
    "v2.4.1",
    "10.0.19045.3803",
    "4.18.0-513.el8",
    "0x80070005",
    "E1234",
    "KB5034441",
    "CVE-2024-12345",
    "#4471",
    "ticket 4471 and 4472",
    "INV-2024-0042",
    "order 2024-0042",
    "FY 2023-2024",
    "$1,299.00",
    "1,299,000.00",
    "1.299.000 EUR",
    "1 299 000",
    "3.14159265",
    "2024",
    "port 8080",
    "localhost:8080",
    "ports 80 443 8080",
    "HTTP 500 502 503",
    "00:1A:2B:3C:4D:5E",
    "00-11-22-33-44-55",
    "42",
    "123456",
    "1714567890",
    "0000123456",
    "uuid 123e4567-e89b-12d3-a456-426614174000",
    "1 2 3 4 5 6 7 8 9 10",
]

EMAILS = [
    "john@example.com",
    "john.doe@example.com",
    "first.last+tag@sub.example.co.uk",
    "a-b_c@my-host.example.org",
    "Jane.Doe@Example.COM",
    "support+billing@help.desk.example.io",
    "jürgen@beispiel.de",
]

NOT_EMAILS = [
    "@channel",
    "@here please",
    "user@",
    "user@localhost",
    "foo@bar",
    "pkg@1.2.3",
    "icon@2x.png",
    "a @ b.com",
]


@pytest.mark.parametrize(
    ("text", "masked"), [*((phone, "[phone]") for phone in PHONES), *((email, "[email]") for email in EMAILS)]
)
def test_phone_numbers_and_email_addresses_are_masked(text, masked):
    assert mask_personal_data(text) == masked


@pytest.mark.parametrize("text", [*NOT_PHONES, *NOT_EMAILS])
def test_numbers_of_it_tickets_and_other_at_signs_are_left_alone(text):
    assert mask_personal_data(text) == text


@pytest.mark.parametrize("phone", PHONES)
def test_masking_inside_text_keeps_the_surrounding_words(phone):
    text = f"Printer on 10.0.0.12 jammed since 2024-05-01 10:30. Call me at {phone}, or mail jane.doe@example.com!"
    expected = "Printer on 10.0.0.12 jammed since 2024-05-01 10:30. Call me at [phone], or mail [email]!"
    assert mask_personal_data(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Tel:+49 30 1234567 (office)", "Tel:[phone] (office)"),
        ("(call 555-0192)", "(call [phone])"),
        ("call 555-0192 2 times", "call [phone] 2 times"),
        ("mobile: 0176 12345678.", "mobile: [phone]."),
        ("555-0192 or 555-0193", "[phone] or [phone]"),
        ("<jane.doe@example.com>; cc bob@example.org.", "<[email]>; cc [email]."),
        ("mailto:ops@corp.example.com?subject=VPN", "mailto:[email]?subject=VPN"),
    ],
)
def test_masking_in_context(text, expected):
    assert mask_personal_data(text) == expected


@pytest.mark.parametrize("text", [*PHONES, *NOT_PHONES, *EMAILS, *NOT_EMAILS])
def test_masking_is_idempotent(text):
    sentence = f"Hi team, {text} - see {text}; thanks, 555-0192 / bob@example.com"
    once = mask_personal_data(sentence)
    assert mask_personal_data(once) == once


def test_flags_choose_what_is_masked():
    text = "Mail jane@example.com or call +1 555 0134 about 10.0.0.12"
    assert mask_personal_data(text, emails=False) == "Mail jane@example.com or call [phone] about 10.0.0.12"
    assert mask_personal_data(text, phones=False) == "Mail [email] or call +1 555 0134 about 10.0.0.12"
    assert mask_personal_data(text, emails=False, phones=False) is text


def test_digits_inside_an_address_are_not_a_phone_number():
    assert mask_personal_data("write to 5550192123@sms.example.com") == "write to [email]"
    assert mask_personal_data("write to 5550192123@sms.example.com", emails=False) == (
        "write to 5550192123@sms.example.com"
    )


def test_text_without_personal_data_is_unchanged():
    text = "VPN drops every 10 minutes since update 3.11.7 (error 0x80070005), see #4471 and INV-2024-0042."
    assert mask_personal_data(text) == text
    assert mask_personal_data("") == ""
