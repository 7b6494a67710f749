"""Types of the optional C speedups in ``_bookext.c`` (see that file and ``botframe.book``)."""

from collections.abc import Sequence

def apply_side(
    sizes: dict[float, float],
    prices: list[float],
    levels: Sequence[tuple[float, float]],
    negate: bool,
    edges: tuple[float, ...],
    /,
) -> tuple[float, ...] | None: ...
def exp_weighted(prices: Sequence[float], sizes: Sequence[float], mid: float, k: float, negated: bool, /) -> float: ...
