"""Numbers as people read them, shared by the terminal tables, ``replicate cost`` and the HTML report,
so a cost or a duration looks the same wherever it is shown."""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Optional

# Cents hide what matters for small amounts: a smoke job on a 0.10/h profile costs ~0.001-0.01.
SIGNIFICANT = 3
MAX_DECIMALS = 8


def money(value: Optional[float], missing: str = "-") -> str:
    """An amount: two decimals from 1 up (``1,234.50``), three significant figures below
    (``0.00123``, ``0.0450``), so a small cost never shows as ``0.00``; ``missing`` for None."""
    if value is None:
        return missing
    value = float(value)
    if value == 0 or not math.isfinite(value) or abs(value) >= 1:
        return f"{value:,.2f}"
    decimals = min(MAX_DECIMALS, SIGNIFICANT - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def priced(value: Optional[float], currency: Optional[str], missing: str = "-") -> str:
    """An amount with its currency (``0.00308 USD``); one recorded without a currency says so."""
    if value is None:
        return missing
    return f"{money(value)} {currency}" if currency else f"{money(value)} (currency not recorded)"


def hardware_of(job: Mapping[str, Any]) -> Mapping[str, Any]:
    """The hardware profile a job row recorded with its config (empty for a row without one)."""
    return (job.get("config") or {}).get("hardware") or {}


def currency_of(job: Mapping[str, Any]) -> Optional[str]:
    """The currency a job row's cost is in: its hardware profile's, as the job recorded it."""
    return hardware_of(job).get("currency")


def price_note(rows: Iterable[Mapping[str, Any]]) -> Optional[str]:
    """Where the prices behind ``rows`` come from, and whether they are placeholders (rows with
    ``price_source`` and ``price_placeholder``); None when no row recorded a price source."""
    seen = sorted({(r["price_source"], bool(r.get("price_placeholder"))) for r in rows if r.get("price_source")})
    if not seen:
        return None
    return "prices: " + "; ".join(source + (" - placeholders, not yet the lab's own rates" if placeholder else "")
                                  for source, placeholder in seen)


def duration(seconds: Optional[float], missing: str = "-") -> str:
    """Seconds as ``45s``, ``3m07s`` or ``2h05m``; ``missing`` for None."""
    if seconds is None:
        return missing
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
