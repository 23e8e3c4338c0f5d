"""Settlement markets as data: the depository, the holiday calendar and the settlement
cycle with the date each cycle took effect (trade dates on or after it use it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class Cycle:
    effective_from: date
    business_days: int


@dataclass(frozen=True)
class Market:
    code: str
    # exchange_calendars name of the market's business-day calendar (an ISO 10383 MIC).
    calendar: str
    depository: str
    depository_bic: str
    cycles: tuple[Cycle, ...]
    # Under the EU CSDR settlement discipline regime (cash penalties for fails): EU/EEA
    # depositories only. The UK left the EU and did not keep the penalty regime.
    csdr: bool = False


_T2 = Cycle(date(1995, 6, 7), 2)
# SEC rule 15c6-1 amendment: T+1 from 2024-05-28 in the US.
US = Market("US", "XNYS", "DTC", "DTCYUS33XXX", (_T2, Cycle(date(2024, 5, 28), 1)))
# The EU, UK and Swiss move to T+1 on 2027-10-11.
UK = Market("UK", "XLON", "CREST", "CRSTGB22XXX", (_T2, Cycle(date(2027, 10, 11), 1)))
FR = Market(
    "FR", "XPAR", "Euroclear France", "SICVFRPPXXX", (_T2, Cycle(date(2027, 10, 11), 1)), csdr=True
)
DE = Market(
    "DE",
    "XETR",
    "Clearstream Banking Frankfurt",
    "DAKVDEFFXXX",
    (_T2, Cycle(date(2027, 10, 11), 1)),
    csdr=True,
)
NL = Market(
    "NL",
    "XAMS",
    "Euroclear Nederland",
    "NECINL2AXXX",
    (_T2, Cycle(date(2027, 10, 11), 1)),
    csdr=True,
)

# The market is where the security is issued, read from the ISIN's country prefix.
MARKET_OF_ISIN_COUNTRY: dict[str, Market] = {
    "US": US,
    "GB": UK,
    "FR": FR,
    "DE": DE,
    "NL": NL,
}
MARKETS: dict[str, Market] = {m.code: m for m in (US, UK, FR, DE, NL)}

# The place of settlement of a sese.023 is the depository's BIC. An SSI names its depository
# in words: these are the names it may use for each market's depository.
DEPOSITORY_ALIASES: dict[str, Market] = {
    "DTC": US,
    "DTCC": US,
    "CREST": UK,
    "Euroclear UK": UK,
    "Euroclear UK & International": UK,
    "Euroclear France": FR,
    "Clearstream Banking Frankfurt": DE,
    "Clearstream Frankfurt": DE,
    "Clearstream Banking AG": DE,
    "Euroclear Nederland": NL,
}


def is_known_depository(depository: str) -> bool:
    """Whether an SSI's depository is one of the markets' depositories (name, alias or BIC)."""
    name = depository.strip()
    names = {m.depository.casefold() for m in MARKETS.values()}
    names.update(alias.casefold() for alias in DEPOSITORY_ALIASES)
    bics = {m.depository_bic for m in MARKETS.values()}
    bics.update(m.depository_bic[:8] for m in MARKETS.values())
    return name.casefold() in names or name.upper() in bics


def depository_bic(depository: str, market: str) -> str:
    """The BIC of the depository an SSI names (by name, alias or BIC); an unknown name is
    the market's own depository, where every trade of that market settles."""
    by_name = {m.depository.casefold(): m for m in MARKETS.values()}
    by_name.update({alias.casefold(): m for alias, m in DEPOSITORY_ALIASES.items()})
    by_bic = {m.depository_bic: m for m in MARKETS.values()}
    by_bic.update({m.depository_bic[:8]: m for m in MARKETS.values()})
    found = by_name.get(depository.strip().casefold()) or by_bic.get(depository.strip().upper())
    return (found or MARKETS[market]).depository_bic
