// Package sysv is the Go zoo's hardened System V shared-memory layer: raw
// system calls from the standard library, every result checked and returned
// as an error that names the call.
package sysv

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

const (
	IpcCreat  = 0o1000
	IpcExcl   = 0o2000
	ipcRmid   = 0
	ipcStat   = 2
	ShmRdonly = 0o10000
)

// Key is a System V IPC key (key_t).
type Key int32

// CallError is a failed system call with its arguments in words.
type CallError struct {
	Call  string
	Errno syscall.Errno
}

func (e *CallError) Error() string { return fmt.Sprintf("%s: %s", e.Call, e.Errno.Error()) }

// Ftok derives the key as glibc's ftok does, refusing a file it cannot stat.
func Ftok(path string, proj int) (Key, error) {
	if proj&0xff == 0 {
		return 0, fmt.Errorf("project id %d has no low byte for ftok", proj)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("key file %q: %w", path, err)
	}
	dev := uint32(st.Dev & 0xff)
	if Fault("ftok-drops-device") {
		dev = 0 // the fault: a home-made ftok without st_dev's byte
	}
	return Key(int32(uint32(proj&0xff)<<24 | dev<<16 | uint32(st.Ino&0xffff))), nil
}

// Get is shmget(2).
func Get(key Key, size int, flags int) (int, error) {
	id, _, errno := syscall.Syscall(syscall.SYS_SHMGET, uintptr(uint32(key)), uintptr(size), uintptr(flags))
	if errno != 0 {
		return -1, &CallError{fmt.Sprintf("shmget(key %#x, %d bytes, flags %#o)", uint32(key), size, flags), errno}
	}
	return int(id), nil
}

// Segment is one attachment; Detach undoes it once.
type Segment struct {
	addr  uintptr
	bytes []byte
}

// Attach is shmat(2) on the whole segment (size from IPC_STAT).
func Attach(id int, flags int) (*Segment, error) {
	ds, err := Stat(id)
	if err != nil {
		return nil, err
	}
	addr, _, errno := syscall.Syscall(syscall.SYS_SHMAT, uintptr(id), 0, uintptr(flags))
	if errno != 0 {
		return nil, &CallError{fmt.Sprintf("shmat(id %d)", id), errno}
	}
	return &Segment{addr, unsafe.Slice((*byte)(unsafe.Pointer(addr)), ds.Segsz)}, nil
}

// Bytes is the attached memory; invalid after Detach.
func (s *Segment) Bytes() []byte { return s.bytes }

// Detach is shmdt(2).
func (s *Segment) Detach() error {
	if s.bytes == nil {
		return fmt.Errorf("segment detached already")
	}
	s.bytes = nil
	if _, _, errno := syscall.Syscall(syscall.SYS_SHMDT, s.addr, 0, 0); errno != 0 {
		return &CallError{"shmdt", errno}
	}
	return nil
}

// DetachAgain is the fault of a second shmdt on an address already detached.
func (s *Segment) DetachAgain() error {
	if _, _, errno := syscall.Syscall(syscall.SYS_SHMDT, s.addr, 0, 0); errno != 0 {
		return &CallError{"second shmdt", errno}
	}
	return nil
}

// Remove is shmctl(IPC_RMID).
func Remove(id int) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_SHMCTL, uintptr(id), ipcRmid, 0); errno != 0 {
		return &CallError{fmt.Sprintf("shmctl(id %d, IPC_RMID)", id), errno}
	}
	return nil
}

// Ds is the part of struct shmid64_ds (x86_64) this program reads.
type Ds struct {
	Perm struct {
		Key                  int32
		UID, GID, CUID, CGID uint32
		Mode                 uint16
		_                    uint16
		Seq                  uint16
		_                    uint16
		_                    [2]uint64
	}
	Segsz               uint64
	Atime, Dtime, Ctime int64
	Cpid, Lpid          int32
	Nattch              uint64
	_                   [2]uint64
}

// Stat is shmctl(IPC_STAT).
func Stat(id int) (*Ds, error) {
	var ds Ds
	if _, _, errno := syscall.Syscall(syscall.SYS_SHMCTL, uintptr(id), ipcStat, uintptr(unsafe.Pointer(&ds))); errno != 0 {
		return nil, &CallError{fmt.Sprintf("shmctl(id %d, IPC_STAT)", id), errno}
	}
	return &ds, nil
}

// Fault reports whether the zoo's negative tests switched fault name on.
func Fault(name string) bool { return os.Getenv("ZOO_FAULT") == name }
