# A faithful third-party implementation of the seed writer, on Python's sysv_ipc.
# It does not flush its prompt (as a program writing to a pipe need not).
import sys, sysv_ipc
key = sysv_ipc.ftok("shmfile", 65, silence_warning=True)
mem = sysv_ipc.SharedMemory(key, sysv_ipc.IPC_CREAT, mode=0o666, size=1024)
out = sys.stdout.buffer
out.write(b"Write Data: ")   # deliberately not flushed, as a pipe-buffered program would
line = sys.stdin.buffer.readline()
if line.endswith(b"\n"):
    line = line[:-1]
mem.write(line + b"\0")
data = mem.read()
out.write(b"Data written in memory: " + data.split(b"\0")[0] + b"\n")
out.flush()
mem.detach()
