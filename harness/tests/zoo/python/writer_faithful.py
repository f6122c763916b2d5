"""Zoo, Python, faithful writer: the seed's writer through ctypes on libc.

Like the original it checks nothing: ftok's -1 becomes key 0xffffffff, the
results of shmget and shmat are used as they come, and the line is copied
into the segment with no bound.
"""
import ctypes
import sys

libc = ctypes.CDLL(None)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.shmdt.argtypes = [ctypes.c_void_p]
IPC_CREAT = 0o1000

key = libc.ftok(b"shmfile", 65)
shmid = libc.shmget(key, 1024, 0o666 | IPC_CREAT)
addr = libc.shmat(shmid, None, 0)

sys.stdout.buffer.write(b"Write Data: ")
line = sys.stdin.buffer.readline()
if line:  # gets() at end of input stores nothing
    if line.endswith(b"\n"):
        line = line[:-1]
    ctypes.memmove(addr, line + b"\0", len(line) + 1)
sys.stdout.buffer.write(b"Data written in memory: " + ctypes.string_at(addr) + b"\n")
sys.stdout.flush()

libc.shmdt(addr)
