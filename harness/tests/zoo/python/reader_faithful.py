"""Zoo, Python, faithful reader: the seed's reader through ctypes on libc.

It checks nothing, as the original: shmget creates an empty segment when there
is none, and IPC_RMID's result is ignored.
"""
import ctypes
import sys

libc = ctypes.CDLL(None)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.shmdt.argtypes = [ctypes.c_void_p]
libc.shmctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
IPC_CREAT = 0o1000
IPC_RMID = 0

key = libc.ftok(b"shmfile", 65)
shmid = libc.shmget(key, 1024, 0o666 | IPC_CREAT)
addr = libc.shmat(shmid, None, 0)

sys.stdout.buffer.write(b"Data read from memory: " + ctypes.string_at(addr) + b"\n")
sys.stdout.flush()

libc.shmdt(addr)
libc.shmctl(shmid, IPC_RMID, None)
