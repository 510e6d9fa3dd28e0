"""The one exception tree of obd-gateway.

::

    GatewayError
     ├── ConfigError(GatewayError, ValueError)          a key of the configuration is wrong
     │    └── FormulaError(ConfigError)                 a user PID's formula cannot be compiled (position)
     ├── ParseError(GatewayError, ValueError)           adapter output or CAN frames we cannot read
     ├── TransportError(GatewayError, OSError)          the byte stream to the adapter failed
     │    └── TransportTimeout(TransportError, TimeoutError)
     ├── AdapterError(GatewayError)                     the adapter answered, but not usefully
     │    ├── NoDataError(AdapterError)                 NO DATA: the ECU did not answer this request
     │    ├── BusError(AdapterError)                    CAN ERROR, BUS ERROR, UNABLE TO CONNECT ...
     │    │    └── ProtocolNotFound(BusError)           no protocol answered: ignition off, no car
     │    ├── UnsupportedCommand(AdapterError)          "?" to a command a clone lacks
     │    ├── NegativeResponse(AdapterError)            7F sid NRC: the ECU refused a read (0x31: no such DID)
     │    ├── AdapterReset(AdapterError)                the power-up banner mid-stream: settings lost
     │    ├── Stopped(AdapterError)                     STOPPED: input interrupted the chip's answer
     │    └── OversizedAnswer(AdapterError)             an answer past the bytes kept per answer
     ├── LocationError(GatewayError)                    the GPS source (gpsd, an NMEA receiver) failed or sent garbage
 │    └── BadFix(LocationError, ValueError)          one report/sentence that cannot be used (counted, dropped)
 ├── StoreError(GatewayError)                       the SQLite buffer cannot be used (a full disk is
     │                                                  not an error: the store keeps data in memory)
     ├── UplinkError(GatewayError)                      a back-end refused or could not be reached
     │    ├── AuthError(UplinkError)                    credentials refused
     │    └── RejectedBatch(UplinkError)                the receiver says the batch is malformed (4xx)
     └── ForbiddenRequest(GatewayError, PermissionError) a write to the vehicle that is not enabled
          └── DisallowedRequest(ForbiddenRequest)       the write guard refused a line or frame

Third-party errors are translated at the boundary and chained (``raise TransportError(...) from exc``).
"""


class GatewayError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(GatewayError, ValueError):
    """The configuration is invalid; the message names the key and the problem."""


class FormulaError(ConfigError):
    """A user formula that cannot be compiled; ``position`` is the 0-based character index of the problem."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.position = position


class ParseError(GatewayError, ValueError):
    """Adapter output or CAN frames could not be parsed."""


class TransportError(GatewayError, OSError):
    """The byte stream to the adapter failed (closed, unplugged, refused)."""


class TransportTimeout(TransportError, TimeoutError):
    """The adapter did not answer in time."""


class AdapterError(GatewayError):
    """The adapter answered, but with an error instead of data."""


class NoDataError(AdapterError):
    """``NO DATA``: no ECU answered the request."""


class BusError(AdapterError):
    """The vehicle bus failed: CAN ERROR, BUS ERROR, UNABLE TO CONNECT, BUFFER FULL ..."""


class UnsupportedCommand(AdapterError):
    """The adapter answered ``?``: it does not know the command (common on clones)."""


class NegativeResponse(AdapterError):
    """The ECU answered ``7F sid nrc`` (ISO 14229-1 negative response codes: 0x11 service not supported,
    0x12 sub-function not supported, 0x22 conditions not correct, 0x31 request out of range)."""

    def __init__(self, service: int, nrc: int) -> None:
        super().__init__(f"negative response 7F {service:02X} {nrc:02X}")
        self.service = service
        self.nrc = nrc


class ProtocolNotFound(BusError):
    """No OBD protocol answered: ignition off, or the adapter is not plugged into a car."""


class AdapterReset(AdapterError):
    """The adapter printed its power-up banner mid-stream: it reset and lost its settings."""


class Stopped(AdapterError):
    """``STOPPED``: the adapter was interrupted by input while answering (noise or our own bytes)."""


class OversizedAnswer(AdapterError):
    """An answer grew past the bytes kept per answer (a broken or hostile adapter streaming data)."""


class LocationError(GatewayError):
    """The location source (gpsd, an NMEA receiver) is gone or unusable; the source reconnects."""


class BadFix(LocationError, ValueError):
    """One gpsd report or NMEA sentence that cannot be used: counted by reason and dropped."""


class StoreError(GatewayError):
    """The SQLite buffer cannot be used."""


class UplinkError(GatewayError):
    """A back-end could not be reached or refused a request."""


class AuthError(UplinkError):
    """The back-end refused our credentials."""


class RejectedBatch(UplinkError):
    """The receiver rejected a batch as malformed; retrying the same bytes will not help."""


class ForbiddenRequest(GatewayError, PermissionError):
    """A request that would write to the vehicle, while that is not enabled in the configuration."""


class DisallowedRequest(ForbiddenRequest):
    """The write guard refused to send a line or frame: not an allowed AT/ST command or read service.

    Raised at the lowest write point, before any byte leaves; it means a bug in the caller, never a
    fault of the car or the adapter."""
