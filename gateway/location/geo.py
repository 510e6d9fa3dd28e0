"""Pure geometry for positions: distances, path simplification, Google's Encoded Polyline, privacy zones.

Distances use the haversine formula on a sphere of the mean Earth radius (6,371,008.8 m, IUGG); over the
few hundred metres between two fixes the error against the WGS-84 ellipsoid is below 0.5 %, which the
2 % distance budget of a trip absorbs.

:func:`simplify` is Ramer–Douglas–Peucker (Ramer 1972; Douglas & Peucker 1973) on a local
equirectangular projection, written here rather than taken from ``rdp`` or ``simplification``: both
pull in numpy (``pip install --dry-run simplification rdp`` → numpy-2.4.6, rdp-0.8, simplification-2.0.0),
about 20 MB on a Raspberry Pi for a few thousand points once per trip, and ``rdp`` is unmaintained
since 2016. The implementation is iterative (an explicit stack: no recursion limit on long trips).
Encoding uses the ``polyline`` package (Google's Encoded Polyline Algorithm Format, precision 5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import polyline as _polyline

from gateway.model import Position

EARTH_RADIUS_M = 6_371_008.8

Point = tuple[float, float]  # (lat, lon) in degrees


def valid_lat_lon(lat: float, lon: float) -> bool:
    """A finite position on Earth (and not the 0/0 "null island" some receivers send without a fix)."""
    return (
        math.isfinite(lat)
        and math.isfinite(lon)
        and -90.0 <= lat <= 90.0
        and -180.0 <= lon <= 180.0
        and not (lat == 0.0 and lon == 0.0)
    )


def distance_m(a: Point, b: Point) -> float:
    """Great-circle distance in metres (haversine)."""
    lat1, lon1 = math.radians(a[0]), math.radians(a[1])
    lat2, lon2 = math.radians(b[0]), math.radians(b[1])
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def path_length_m(points: Sequence[Point]) -> float:
    """Sum of the distances between consecutive points."""
    return sum(distance_m(points[i - 1], points[i]) for i in range(1, len(points)))


def heading_change_deg(h0: float, h1: float) -> float:
    """Signed smallest change from heading ``h0`` to ``h1`` in degrees (-180, 180]."""
    d = (h1 - h0 + 180.0) % 360.0 - 180.0
    return 180.0 if d == -180.0 else d


def _xy(origin: Point, p: Point) -> tuple[float, float]:
    """Metres east/north of ``origin`` (equirectangular: good to well under a metre over a few km)."""
    k = math.radians(1) * EARTH_RADIUS_M
    return ((p[1] - origin[1]) * k * math.cos(math.radians(origin[0])), (p[0] - origin[0]) * k)


def _seg_dist(p: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    dx, dy = b[0] - a[0], b[1] - a[1]
    if dx == 0 and dy == 0:
        return math.hypot(p[0] - a[0], p[1] - a[1])
    t = max(0.0, min(1.0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / (dx * dx + dy * dy)))
    return math.hypot(p[0] - (a[0] + t * dx), p[1] - (a[1] + t * dy))


def simplify(points: Sequence[Point], tolerance_m: float) -> list[Point]:
    """Douglas–Peucker: the fewest points such that no dropped point is further than ``tolerance_m``
    from the simplified line. First and last points are always kept."""
    n = len(points)
    if n <= 2:
        return list(points)
    origin = points[0]
    xy = [_xy(origin, p) for p in points]
    keep = [False] * n
    keep[0] = keep[-1] = True
    stack = [(0, n - 1)]
    while stack:
        i, j = stack.pop()
        best, at = -1.0, -1
        for k in range(i + 1, j):
            d = _seg_dist(xy[k], xy[i], xy[j])
            if d > best:
                best, at = d, k
        if at >= 0 and best > tolerance_m:
            keep[at] = True
            stack.append((i, at))
            stack.append((at, j))
    return [p for p, k in zip(points, keep, strict=True) if k]


def bounded(points: Sequence[Point], tolerance_m: float, max_points: int) -> tuple[list[Point], float]:
    """Simplify with ``tolerance_m``, doubling it until at most ``max_points`` remain.

    Returns the points and the tolerance that was needed (a long trip gets a coarser path, never an
    unbounded one).
    """
    tol = tolerance_m
    out = simplify(points, tol)
    while len(out) > max_points:
        tol *= 2
        out = simplify(out, tol)
    return out, tol


def encode(points: Sequence[Point]) -> str:
    """Google's Encoded Polyline (precision 5, about 1.1 m)."""
    return str(_polyline.encode([(round(lat, 6), round(lon, 6)) for lat, lon in points], 5))


def decode(text: str) -> list[Point]:
    """The points of an Encoded Polyline."""
    return [(float(a), float(b)) for a, b in _polyline.decode(text, 5)]


def zone_of(p: Point, zones: Sequence[dict[str, float]]) -> dict[str, float] | None:
    """The first privacy zone (``{lat, lon, radius_m}``) that contains ``p``, or None."""
    for z in zones:
        if distance_m(p, (z["lat"], z["lon"])) <= z["radius_m"]:
            return z
    return None


def private(pos: Position, zones: Sequence[dict[str, float]]) -> Position:
    """``pos`` unchanged outside every privacy zone; inside one, the zone's centre with the zone's radius
    as its accuracy and no course or speed (so nothing inside the zone can be reconstructed)."""
    if not zones:
        return pos
    z = zone_of((pos.lat, pos.lon), zones)
    if z is None:
        return pos
    return Position(
        ts_ms=pos.ts_ms,
        lat=z["lat"],
        lon=z["lon"],
        mode=pos.mode,
        accuracy_m=z["radius_m"],
        gps_ms=pos.gps_ms,
    )


def is_private(pos: Position, zones: Sequence[dict[str, float]]) -> bool:
    """Whether ``pos`` lies in a privacy zone."""
    return bool(zones) and zone_of((pos.lat, pos.lon), zones) is not None
