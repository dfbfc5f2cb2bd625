"""tcplab: check on real Linux kernels that TCP behaves as the textbook says.

The public face: labs and courses import from here (``from tcplab import Topology, Drop, Netem``),
so the layout inside can change without breaking them.  Inside, the folders are layers, each
importing only the layers below it::

    tcplab/errors.py, wait.py, settings.py, tools.py
                       base: typed errors, polling with a deadline, pinned knobs, system programs
    tcplab/observe/    capture (Scapy, ring), trace model, fast parser, expectations,
                       the kernel's state record                                      (uses: base)
    tcplab/lab/        where labs can run (root, rootless, VM), namespaces, topology, the wire
                       and its impairments, sockets,
                       programs, sock_diag                                            (uses: observe, base)
    tcplab/report/     ladder SVG, the HTML report's pieces, the state diagram         (uses: observe, base)
    tcplab/grading/    scores, partial credit, results.json, assignments, the sandbox,
                       predictions, the batch grader, Gradescope's bundle        (uses: lab, observe, base)
    tcplab/cli/        doctor, coverage, vm, soak, ladder, states, grade, bundle      (uses: everything)

``observe`` sits below ``lab``: a capture works on any object with hosts (duck-typed), and the
topology offers ``capture()`` on top of it.  tests/unit/test_layout.py enforces the directions.
"""
from .grading import Assignment, Limits, Sandbox, Score
from .errors import (CaptureIncomplete, ConfigError, ExpectationFailed, TcplabError, Unsupported,
                     WaitTimeout)
from .lab.diag import StatePoller
from .lab.pkt import ScriptedPeer
from .wire.impair import Drop, Netem
from .lab.sockets import Conn, Sending
from .observe.tcpinfo import TcpInfo
from .lab.topology import Topology
from .observe.capture import Capture
from .observe.expect import HANDSHAKE, Expectation
from .observe.ring import RingCapture
from .observe.trace import Connection, Segment, Trace
from .wait import until

__all__ = ["Topology", "Drop", "Netem", "Capture", "RingCapture", "Trace", "Connection", "Segment",
           "Expectation", "HANDSHAKE", "until", "TcplabError", "ConfigError", "Unsupported", "CaptureIncomplete",
           "WaitTimeout", "ExpectationFailed", "Assignment", "Sandbox", "Limits", "Score", "StatePoller", "ScriptedPeer", "Conn", "Sending", "TcpInfo"]
__version__ = "0.1.0"
