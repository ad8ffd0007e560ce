"""One format for money and durations, wherever they are shown (tables, `replicate cost`, report)."""

from __future__ import annotations

import pytest

from replicate.formatting import duration, money


@pytest.mark.parametrize("value, shown", [
    (None, "-"), (0.0, "0.00"), (0.001234, "0.00123"), (0.0045, "0.00450"), (0.5, "0.500"), (4.5, "4.50"),
    (1234.5, "1,234.50"), (-0.0123, "-0.0123")])
def test_money_shows_cents_from_one_up_and_three_significant_figures_below(value, shown):
    assert money(value) == shown


@pytest.mark.parametrize("seconds, shown", [(None, "–"), (5.4, "5s"), (65, "1m05s"), (3725, "1h02m")])
def test_duration_in_seconds_minutes_or_hours(seconds, shown):
    assert duration(seconds, missing="–") == shown


def test_an_amount_carries_its_currency_and_a_placeholder_price_says_so():
    from replicate.formatting import price_note, priced

    assert priced(0.00308, "USD") == "0.00308 USD" and priced(1234.5, "EUR") == "1,234.50 EUR"
    assert priced(1.5, None) == "1.50 (currency not recorded)" and priced(None, "USD") == "-"
    placeholder = {"price_source": "lab rate", "price_placeholder": True}
    rows = [placeholder, placeholder, {"price_source": "GCP list price 2026-12", "price_placeholder": False},
            {"price_source": None}]
    assert price_note(rows) == ("prices: GCP list price 2026-12; lab rate - placeholders, not yet the lab's own rates")
    assert price_note([{"cost": 1.0}]) is None
