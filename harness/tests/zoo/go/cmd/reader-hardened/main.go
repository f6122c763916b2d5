// Zoo, Go, hardened reader. It copies the text out of the segment, removes
// the segment while still attached (IPC_RMID marks it; the detach destroys
// it), detaches, and only then prints: one way round that never asks the
// kernel to remove a segment the detach may already have destroyed.
package main

import (
	"bytes"
	"os"

	"shmconf.zoo/go/sysv"
)

func main() {
	o := sysv.Parse("zoo-go-reader", false)
	key, err := o.Key()
	if err != nil {
		o.Fail(err)
	}
	perm := o.Perm()
	if sysv.Fault("reader-mode-0600") {
		perm = 0o600
	}
	id, err := sysv.Get(key, o.Size, perm|sysv.IpcCreat)
	if err != nil {
		o.Fail(err)
	}
	seg, err := sysv.Attach(id, sysv.ShmRdonly)
	if err != nil {
		o.Fail(err)
	}
	mem := seg.Bytes()
	text := mem
	if i := bytes.IndexByte(mem, 0); i >= 0 {
		text = mem[:i]
	}
	if sysv.Fault("reader-drop-first") && len(text) > 0 {
		text = text[1:]
	}
	out := append(append([]byte("Data read from memory: "), text...), '\n')
	if !o.Keep && !sysv.Fault("reader-no-rmid") {
		if err := sysv.Remove(id); err != nil {
			o.Fail(err)
		}
	}
	if err := seg.Detach(); err != nil {
		o.Fail(err)
	}
	if sysv.Fault("reader-double-detach") {
		if err := seg.DetachAgain(); err != nil {
			o.Fail(err)
		}
	}
	if _, err := os.Stdout.Write(out); err != nil {
		o.Fail(err)
	}
}
