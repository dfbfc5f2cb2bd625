"""The delay line's relay loop, run as a process of its own by :mod:`tcplab.wire.delayline`.

It imports nothing from tcplab (it starts in milliseconds) and shares no interpreter lock with
the lab, whose capture threads would otherwise hold frames back by up to the interpreter's switch
interval (5 ms).  Arguments: one JSON object on the command line, with the numbers of two
inherited file descriptors: ``tap`` (the tap on the wire's bridge) and ``packet`` (a packet
socket on the server's veth peer).  It runs
until its standard input reaches end of file (the lab closed it, or died), then prints its
counters as one JSON line.

Each direction applies, per frame and from a PRNG seeded with (seed, direction): duplication (a
second copy), corruption (one bit flipped after the Ethernet header), reordering (sent without
the delay) and a delay of ``delay`` ms plus a uniform draw in [-jitter, +jitter] ms, as sch_netem
does.  Frames are sent in order of their departure time; equal times keep their arrival order.
"""
import heapq
import json
import os
import random
import select
import socket
import sys
import time

ETH_HLEN = 14


class Direction:
    def __init__(self, name, spec, seed):
        self.name = name
        self.delay = spec.get("delay", 0) / 1000.0
        self.jitter = spec.get("jitter", 0) / 1000.0
        self.duplicate = spec.get("duplicate", 0) / 100.0
        self.reorder = spec.get("reorder", 0) / 100.0
        self.corrupt = spec.get("corrupt", 0) / 100.0
        self.rng = random.Random(f"{seed}/{name}")
        self.stats = {"frames": 0, "duplicated": 0, "corrupted": 0, "reordered": 0}

    def schedule(self, frame, now):
        """(departure time, frame) for each copy of ``frame`` that will leave."""
        self.stats["frames"] += 1
        copies = [frame]
        if self.duplicate and self.rng.random() < self.duplicate:
            copies.append(frame)
            self.stats["duplicated"] += 1
        out = []
        for f in copies:
            if self.corrupt and len(f) > ETH_HLEN and self.rng.random() < self.corrupt:
                i = self.rng.randrange(ETH_HLEN, len(f))
                f = f[:i] + bytes([f[i] ^ (1 << self.rng.randrange(8))]) + f[i + 1:]
                self.stats["corrupted"] += 1
            if self.reorder and self.rng.random() < self.reorder:
                out.append((now, f))
                self.stats["reordered"] += 1
                continue
            wait = self.delay
            if self.jitter:
                wait = max(0.0, wait + self.rng.uniform(-self.jitter, self.jitter))
            out.append((now + wait, f))
        return out


def main() -> None:
    args = json.loads(sys.argv[1])
    tap = args["tap"]
    pkt = socket.socket(fileno=args["packet"])
    os.set_blocking(tap, False)
    pkt.setblocking(False)
    c2s = Direction("c2s", args.get("c2s") or {}, args["seed"])
    s2c = Direction("s2c", args.get("s2c") or {}, args["seed"])

    def send_c2s(frame):
        pkt.send(frame)          # out of the server's veth peer: the server receives it

    def send_s2c(frame):
        os.write(tap, frame)     # into the tap: the bridge receives it from the server's side

    queue = []   # (departure, arrival order, send, frame)
    order = 0
    stdin = sys.stdin.fileno()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        timeout = None
        if queue:
            timeout = max(0.0, queue[0][0] - time.monotonic())
        r, _, _ = select.select([tap, pkt, stdin], [], [], timeout)
        for src in r:
            if src == stdin:
                if not os.read(stdin, 4096):
                    json.dump({"c2s": c2s.stats, "s2c": s2c.stats}, sys.stdout)
                    sys.stdout.write("\n")
                    sys.stdout.flush()
                    return
                continue
            while True:   # every frame waiting on this side
                try:
                    frame = os.read(tap, 65536) if src == tap else pkt.recv(65536)
                except BlockingIOError:
                    break
                except OSError:
                    break    # a device event (ENETDOWN) reported once on the socket: read on
                # each frame's own reading time: one taken before a long read loop would
                # send the frames read late in it early
                direction, send = (c2s, send_c2s) if src == tap else (s2c, send_s2c)
                for when, f in direction.schedule(frame, time.monotonic()):
                    heapq.heappush(queue, (when, order, send, f))
                    order += 1
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, send, f = heapq.heappop(queue)
            try:
                send(f)
            except OSError:
                pass     # a frame the device refuses is a frame lost on the wire


if __name__ == "__main__":
    main()
