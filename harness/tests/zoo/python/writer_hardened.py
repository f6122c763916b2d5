"""Zoo, Python, hardened writer.

It opens the segment first and creates it (IPC_EXCL) only when there is none,
so it knows what it made; the line is read through readline's own bound and
stored only when it fits: a refused line leaves the table as it was.
"""
import ctypes
import errno
import sys

import zoo_sysv as z

PROG = "zoo-py-writer"


def open_or_create(key, args):
    """(shmid, created) for the key; a segment removed between calls is retried."""
    for _ in range(8):
        if not args.exclusive:
            try:
                return z.shmget(key, args.size, args.mode), False
            except z.ZooError as e:
                if e.errno != errno.ENOENT:
                    raise
        try:
            return z.shmget(key, args.size, args.mode | z.IPC_CREAT | z.IPC_EXCL), True
        except z.ZooError as e:
            if args.exclusive or e.errno != errno.EEXIST:
                raise
    raise z.ZooError("the segment kept appearing and vanishing; gave up")


def main():
    args = z.parse(PROG, writer=True)
    key = z.key_of(args)
    shmid, created = open_or_create(key, args)
    addr = z.shmat(shmid, 0)
    try:
        sys.stdout.buffer.write(b"Write Data: ")
        sys.stdout.flush()
        room = 100 if z.fault("writer-truncate") else args.size - 1
        line = sys.stdin.buffer.readline(room + 1)
        if not line:
            if z.fault("writer-clear-at-eof"):
                ctypes.memset(addr, 0, args.size)
            raise z.ZooError("standard input held no line to write")
        if line.endswith(b"\n"):
            line = line[:-1]
        elif len(line) > room:
            if not z.fault("writer-truncate"):
                raise z.ZooError(f"refusing a line over {room} bytes: the {args.size}-byte segment "
                                 "needs one byte for the terminator")
            line = line[:room]
    except BaseException:
        z.shmdt(addr)
        if created:
            z.rmid(shmid)
        raise
    data = line if z.fault("writer-no-nul") else line + b"\0"
    ctypes.memmove(addr, data, len(data))
    stored = ctypes.string_at(addr, args.size).split(b"\0", 1)[0]
    sys.stdout.buffer.write(b"Data written in memory: " + stored + b"\n")
    sys.stdout.flush()
    z.shmdt(addr)


if __name__ == "__main__":
    z.run(PROG, main)
