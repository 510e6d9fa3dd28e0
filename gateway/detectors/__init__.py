"""On-device event rules, one pure state machine per rule (see docs/events-and-trips.md).

Each detector has ``feed(item) -> list[Event]`` and ``tick(now_ms) -> list[Event]`` and keeps its
state JSON-able (``to_state``/``load_state``). :class:`gateway.detection.DetectionEngine` runs them.
"""

from gateway.detectors.base import AUTOMATIC_TYPES, KMH_PER_MPH, Detector, make_event, time_above
from gateway.detectors.harsh import HarshDetector
from gateway.detectors.ignition import IgnitionDetector
from gateway.detectors.mil import MilDetector, parse_dtcs
from gateway.detectors.motion import MotionDetector
from gateway.detectors.speeding import SpeedingDetector

__all__ = [
    "AUTOMATIC_TYPES",
    "KMH_PER_MPH",
    "Detector",
    "HarshDetector",
    "IgnitionDetector",
    "MilDetector",
    "MotionDetector",
    "SpeedingDetector",
    "make_event",
    "parse_dtcs",
    "time_above",
]
