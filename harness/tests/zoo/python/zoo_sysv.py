"""Zoo, Python, hardened pair: System V shared memory through ctypes on libc.

Every call is checked; a failure raises ZooError, which the programs turn into
one line on stderr and exit status 1. ZOO_FAULT=<name> switches on one of the
zoo's injected faults (see ../README.md).
"""
import argparse
import ctypes
import os
import sys

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ftok.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
_libc.shmat.restype = ctypes.c_void_p
_libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
_libc.shmdt.argtypes = [ctypes.c_void_p]
_libc.shmctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]

IPC_CREAT = 0o1000
IPC_EXCL = 0o2000
IPC_RMID = 0
IPC_STAT = 2
SHM_RDONLY = 0o10000
FAILED_ADDRESS = ctypes.c_void_p(-1).value


class ZooError(Exception):
    """A failed step, worded for the user; errno when a system call failed."""

    def __init__(self, message, errno=None):
        super().__init__(message)
        self.errno = errno


def fault(name):
    return os.environ.get("ZOO_FAULT") == name


def _errno_error(what):
    err = ctypes.get_errno()
    return ZooError(f"{what}: {os.strerror(err)} (errno {err})", err)


def _checked(what, result):
    if result == -1:
        raise _errno_error(what)
    return result


def key_of(args):
    if args.key is not None:
        return args.key
    proj = args.proj_id + (1 if fault("wrong-proj-id") else 0)
    if proj & 0xFF == 0:
        raise ZooError(f"project id {args.proj_id} leaves ftok nothing to use")
    try:
        os.stat(args.key_file)
    except OSError as e:
        raise ZooError(f"cannot use {args.key_file!r} as the key file: {e.strerror}") from None
    return _checked(f"ftok({args.key_file!r}, {proj})", _libc.ftok(os.fsencode(args.key_file), proj))


def shmget(key, size, flags):
    return _checked(f"shmget(key {key & 0xffffffff:#x}, {size}, {flags:#o})", _libc.shmget(key, size, flags))


def shmat(shmid, flags):
    addr = _libc.shmat(shmid, None, flags)
    if addr == FAILED_ADDRESS or addr is None:
        raise _errno_error(f"shmat(id {shmid})")
    return addr


def shmdt(addr, what="shmdt"):
    _checked(what, _libc.shmdt(addr))


def rmid(shmid):
    _checked(f"shmctl(id {shmid}, IPC_RMID)", _libc.shmctl(shmid, IPC_RMID, None))


class _ShmidDs(ctypes.Structure):
    """struct shmid_ds on x86_64 Linux (glibc's layout)."""

    _fields_ = [
        ("key", ctypes.c_int32), ("uid", ctypes.c_uint32), ("gid", ctypes.c_uint32),
        ("cuid", ctypes.c_uint32), ("cgid", ctypes.c_uint32), ("mode", ctypes.c_uint16),
        ("pad1", ctypes.c_uint16), ("seq", ctypes.c_uint16), ("pad2", ctypes.c_uint16),
        ("unused1", ctypes.c_uint64), ("unused2", ctypes.c_uint64),
        ("segsz", ctypes.c_size_t), ("atime", ctypes.c_int64), ("dtime", ctypes.c_int64),
        ("ctime", ctypes.c_int64), ("cpid", ctypes.c_int32), ("lpid", ctypes.c_int32),
        ("nattch", ctypes.c_uint64), ("unused4", ctypes.c_uint64), ("unused5", ctypes.c_uint64),
    ]


def segment_size(shmid):
    ds = _ShmidDs()
    _checked(f"shmctl(id {shmid}, IPC_STAT)", _libc.shmctl(shmid, IPC_STAT, ctypes.byref(ds)))
    return ds.segsz


def parse(prog, writer):
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("--key-file", default="shmfile")
    p.add_argument("--proj-id", type=lambda s: int(s, 0), default=65)
    p.add_argument("--key", type=_hex_key, default=None)
    p.add_argument("--size", type=_positive, default=1024)
    p.add_argument("--mode", type=_octal_mode, default=0o666)
    if writer:
        p.add_argument("--exclusive", action="store_true")
    else:
        p.add_argument("--keep", action="store_true")
    return p.parse_args()


def _hex_key(text):
    value = int(text, 16)
    if not 0 < value <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError("a key is 1 to ffffffff (0 would be IPC_PRIVATE)")
    return ctypes.c_int32(value).value


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("the size is at least 1")
    return value


def _octal_mode(text):
    value = int(text, 8)
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError("permission bits are 0 to 777")
    return value


def run(prog, body):
    """Run body(); a ZooError or an I/O error is one line on stderr and status 1."""
    try:
        body()
    except (ZooError, OSError) as e:
        if fault("writer-silent-exit") and "writer" in prog:
            sys.exit(0)
        print(f"{prog}: {e}", file=sys.stderr)
        sys.exit(1)
