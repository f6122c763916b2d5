// Zoo, Go, faithful reader: the seed's reader ported to Go's standard library
// (raw system calls). It checks nothing, as the original: shmget creates an
// empty segment when there is none, and IPC_RMID's result is ignored.
package main

import (
	"os"
	"syscall"
	"unsafe"
)

const (
	ipcCreat = 0o1000
	ipcRmid  = 0
)

// ftok as glibc computes it; -1 when the file cannot be stat'ed.
func ftok(path string, proj int) int32 {
	var st syscall.Stat_t
	if syscall.Stat(path, &st) != nil {
		return -1
	}
	return int32(uint32(proj&0xff)<<24 | uint32(st.Dev&0xff)<<16 | uint32(st.Ino&0xffff))
}

func main() {
	key := ftok("shmfile", 65)
	shmid, _, _ := syscall.Syscall(syscall.SYS_SHMGET, uintptr(key), 1024, 0o666|ipcCreat)
	addr, _, _ := syscall.Syscall(syscall.SYS_SHMAT, shmid, 0, 0)
	str := (*[1024]byte)(unsafe.Pointer(addr))

	end := 0
	for end < len(str) && str[end] != 0 {
		end++
	}
	os.Stdout.Write(append(append([]byte("Data read from memory: "), str[:end]...), '\n'))

	syscall.Syscall(syscall.SYS_SHMDT, addr, 0, 0)
	syscall.Syscall(syscall.SYS_SHMCTL, shmid, ipcRmid, 0)
}
