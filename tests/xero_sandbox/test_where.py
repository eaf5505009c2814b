from __future__ import annotations

from datetime import date

import pytest

from src.xero_sandbox.where import BoolOp, Comparison, WhereError, compile_where, parse_where


def test_parses_xeros_examples() -> None:
    node = parse_where('Type=="ACCREC" AND Date>=DateTime(2025,11,01)')
    assert node == BoolOp(
        "AND", (Comparison("Type", "==", "ACCREC"), Comparison("Date", ">=", date(2025, 11, 1)))
    )
    assert isinstance(parse_where('(Status=="PAID" OR Status=="VOIDED") && Type=="ACCPAY"'), BoolOp)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Type==",
        'Type="ACCREC"',
        'Type=="ACCREC" AND',
        "Date>=DateTime(2025,13,1)",
        'Contact.ContactID==Guid("nope")',
        "Type==ACCREC",
        '(Type=="ACCREC"',
        "Type ~ 1",
    ],
)
def test_refuses_what_it_cannot_parse(text: str) -> None:
    with pytest.raises(WhereError):
        parse_where(text)


def test_compiled_predicates_follow_and_or_precedence() -> None:
    fields = {"A": (lambda item: item[0], str), "B": (lambda item: item[1], str)}
    predicate = compile_where(parse_where('A=="x" OR A=="y" AND B=="z"'), fields)
    assert predicate(("x", "q"))
    assert predicate(("y", "z"))
    assert not predicate(("y", "q"))


def test_unknown_field_is_refused() -> None:
    with pytest.raises(WhereError, match="Reference"):
        compile_where(parse_where('Reference=="x"'), {"Type": (lambda i: i, str)})
