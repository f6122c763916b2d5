"""Zoo, Python, hardened reader.

It prints while attached, removes the segment while still attached (the
kernel destroys it at the detach), then detaches.
"""
import ctypes
import sys

import zoo_sysv as z

PROG = "zoo-py-reader"


def main():
    args = z.parse(PROG, writer=False)
    key = z.key_of(args)
    mode = 0o600 if z.fault("reader-mode-0600") else args.mode
    shmid = z.shmget(key, args.size, mode | z.IPC_CREAT)
    size = z.segment_size(shmid)
    addr = z.shmat(shmid, z.SHM_RDONLY)
    text = ctypes.string_at(addr, size).split(b"\0", 1)[0]
    if z.fault("reader-drop-first"):
        text = text[1:]
    sys.stdout.buffer.write(b"Data read from memory: " + text + b"\n")
    sys.stdout.flush()
    if not args.keep and not z.fault("reader-no-rmid"):
        z.rmid(shmid)
    z.shmdt(addr)
    if z.fault("reader-double-detach"):
        z.shmdt(addr, "a second shmdt of the same address")


if __name__ == "__main__":
    z.run(PROG, main)
