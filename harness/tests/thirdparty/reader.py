# A faithful third-party implementation of the seed reader, on Python's sysv_ipc.
import sys, sysv_ipc
key = sysv_ipc.ftok("shmfile", 65, silence_warning=True)
mem = sysv_ipc.SharedMemory(key, sysv_ipc.IPC_CREAT, mode=0o666, size=1024)
data = mem.read()
sys.stdout.buffer.write(b"Data read from memory: " + data.split(b"\0")[0] + b"\n")
sys.stdout.flush()
mem.detach()
mem.remove()
