"""tcplab: check on real Linux kernels that TCP behaves as the textbook says.

The engine is plain Python: :class:`Topology` builds two hosts on an impairable wire in network
namespaces, :meth:`Topology.capture` records both ends, and :class:`Trace` / :mod:`tcplab.expect`
turn the captures into connections and check them against packetdrill-style expectations.
"""
from .errors import (CaptureIncomplete, ConfigError, ExpectationFailed, TcplabError, Unsupported,
                     WaitTimeout)
from .topology import Topology
from .trace import Connection, Segment, Trace

__all__ = ["Topology", "Trace", "Connection", "Segment", "TcplabError", "ConfigError", "Unsupported",
           "CaptureIncomplete", "WaitTimeout", "ExpectationFailed"]
__version__ = "0.1.0"
