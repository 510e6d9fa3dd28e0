"""obd-gateway: the telematics daemon for a vehicle box."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("obd-gateway")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+src"
