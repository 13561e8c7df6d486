"""Regional surcharges: a stand-in for the in-house package a notebook imports."""

SURCHARGE = {"north": 0.05, "south": 0.02, "east": 0.0, "west": 0.08}


def with_surcharge(amount: float, region: str) -> float:
    return round(amount * (1 + SURCHARGE[region]), 2)
