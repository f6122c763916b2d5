// Zoo, Go, faithful writer: the seed's writer ported to Go's standard library
// (raw system calls). Like the original it checks nothing: a failed ftok
// gives key 0xffffffff, shmget's and shmat's results are used as they come,
// and the line goes straight into the segment, one byte per read.
package main

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

const ipcCreat = 0o1000

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

	fmt.Print("Write Data: ")
	var b [1]byte
	n, _ := os.Stdin.Read(b[:])
	if n == 1 {
		i := 0
		for n == 1 && b[0] != '\n' {
			str[i] = b[0]
			i++
			n, _ = os.Stdin.Read(b[:])
		}
		str[i] = 0
	}
	end := 0
	for end < len(str) && str[end] != 0 {
		end++
	}
	os.Stdout.Write(append(append([]byte("Data written in memory: "), str[:end]...), '\n'))

	syscall.Syscall(syscall.SYS_SHMDT, addr, 0, 0)
}
