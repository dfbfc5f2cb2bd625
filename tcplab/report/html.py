"""The HTML pieces of a lab's entry in the run's report (pytest-html shows them under the test):
claims, points, the wire's impairments, the expected exchange, a picture per connection (a
ladder, or for a bulk transfer a time-sequence graph) and links to both pcaps.  Plain strings:
the plugin hands them to pytest-html as ``extras.html``."""
from __future__ import annotations

from html import escape

from .ladder import ladder_svg

STYLE = ("<style>.tcplab-lab{font-family:sans-serif;margin:6px 0 10px}.tcplab-lab h4{margin:10px 0 4px}"
         ".tcplab-lab pre{background:#f6f6f6;padding:6px;margin:0}.tcplab-lab .tcplab-ladder{border:1px solid #ddd;"
         "margin:4px 0}.tcplab-meta span{margin-right:18px}</style>")


def lab_html(*, claims: str, points: str, wire: str | None, script: str | None,
             pictures: list[tuple[str, str]], pcaps: list[tuple[str, str]], outcome: str) -> str:
    """One lab's block.  ``pictures``: (caption, svg); ``pcaps``: (name, href relative to the report)."""
    out = [STYLE, '<div class="tcplab-lab">', '<div class="tcplab-meta">',
           f"<span><b>claims</b> {escape(claims or '-')}</span>",
           f"<span><b>points</b> {escape(points)}</span>",
           f"<span><b>result</b> {escape(outcome)}</span></div>"]
    out.append(f"<div><b>wire</b> {escape(wire or 'not impaired')}</div>")
    if pcaps:
        out.append("<div><b>captures</b> " + " ".join(f'<a href="{escape(href)}">{escape(name)}</a>'
                                                      for name, href in pcaps) + "</div>")
    if script:
        lines = "\n".join(ln.strip() for ln in script.strip().splitlines() if ln.strip())
        out.append(f"<h4>expected exchange</h4><pre>{escape(lines)}</pre>")
    for caption, svg in pictures:
        out.append(f"<h4>{escape(caption)}</h4>{svg}")
    out.append("</div>")
    return "\n".join(out)


#: a connection with more segments than this is drawn as a time-sequence graph: its ladder
#: would be hundreds of rows no one reads
BULK_SEGMENTS = 60


def connection_pictures(trace, *, mismatch=None, limit: int = 4) -> list[tuple[str, str, str]]:
    """``(kind, caption, svg)`` for the connections of a trace: a ladder (kind "ladder"), the
    failed one marked where it went wrong, or for a bulk transfer the time-sequence graph of its
    bigger sender with the kernel's cwnd and ssthresh underneath (kind "tsg")."""
    out = []
    failed_conn = mismatch.conn if mismatch is not None else None
    for conn in trace.connections()[:limit]:
        same = failed_conn is not None and (conn.client, conn.server) == (failed_conn.client, failed_conn.server)
        ends = f"{conn.client[0]}:{conn.client[1]} > {conn.server[0]}:{conn.server[1]}"
        if len(conn.segments) > BULK_SEGMENTS and not same:
            sender, svg = connection_tsg(conn)
            out.append(("tsg", f"time-sequence graph of the {sender}'s data: {ends}", svg))
            continue
        notes, missing = (mismatch.notes, mismatch.missing) if same else ({}, None)
        caption = f"ladder: {ends}" + (" (where it differs from the expected exchange)" if same else "")
        out.append(("ladder", caption, ladder_svg(conn, notes, missing)))
    return out


def connection_tsg(conn) -> tuple[str, str]:
    """(sender, svg): the time-sequence graph of the side that sent more data, as that side saw
    the connection (what it sent, what reached it), with its record from the kernel if any."""
    from ..errors import TcplabError
    from ..observe.analysis import analyse
    from .tsg import bigger_sender, tsg_svg
    sender = bigger_sender(conn.segments, conn.client)
    view = [s for s in conn.segments if conn.side(s) == sender]
    view += [s for s in (conn.received if conn.received is not None else conn.segments) if conn.side(s) != sender]
    analysed = analyse(sorted(view, key=lambda s: s.time))[0]
    try:
        kernel = conn.sender(sender)
    except TcplabError:
        kernel = None
    me = conn.client if sender == "client" else conn.server
    return sender, tsg_svg(analysed, "client" if analysed.client == me else "server", kernel=kernel or None)
