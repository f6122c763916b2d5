// Zoo, Go, hardened writer. It knows whether it created the segment from
// IPC_STAT (creator pid = its own, no attach before its own), reads the line
// through a bounded buffer, and stores it only when it fits: a refused line
// leaves the table as it was.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	"shmconf.zoo/go/sysv"
)

func main() {
	o := sysv.Parse("zoo-go-writer", true)
	key, err := o.Key()
	if err != nil {
		o.Fail(err)
	}
	flags := o.Perm() | sysv.IpcCreat
	if o.Exclusive {
		flags |= sysv.IpcExcl
	}
	id, err := sysv.Get(key, o.Size, flags)
	if err != nil {
		o.Fail(err)
	}
	ds, err := sysv.Stat(id)
	if err != nil {
		o.Fail(err)
	}
	ours := int(ds.Cpid) == os.Getpid() && ds.Nattch == 0 && ds.Lpid == 0
	seg, err := sysv.Attach(id, 0)
	if err != nil {
		o.Fail(err)
	}
	// Refusals from here on put the table back as it was.
	refuse := func(err error) {
		if derr := seg.Detach(); derr != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", o.Prog, derr)
		}
		if ours {
			if rerr := sysv.Remove(id); rerr != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", o.Prog, rerr)
			}
		}
		o.Fail(err)
	}

	if _, err := os.Stdout.WriteString("Write Data: "); err != nil {
		refuse(err)
	}
	room := o.Size - 1
	if sysv.Fault("writer-truncate") {
		room = 100
	}
	var stream []byte
	if sysv.Fault("writer-streams-line") {
		stream = seg.Bytes()
	}
	line, err := readLine(bufio.NewReader(os.Stdin), room, stream)
	switch {
	case errors.Is(err, io.EOF):
		if sysv.Fault("writer-clear-at-eof") {
			for i := range seg.Bytes() {
				seg.Bytes()[i] = 0
			}
		}
		refuse(errors.New("no line to store: the input is empty"))
	case errors.Is(err, errTooLong):
		refuse(fmt.Errorf("the line is longer than %d bytes, all a %d-byte segment holds besides its NUL", room, o.Size))
	case err != nil:
		refuse(fmt.Errorf("reading the input: %w", err))
	}

	mem := seg.Bytes()
	n := copy(mem, line)
	if !sysv.Fault("writer-no-nul") {
		mem[n] = 0
	}
	end := 0
	for end < o.Size && mem[end] != 0 {
		end++
	}
	out := append(append([]byte("Data written in memory: "), mem[:end]...), '\n')
	if _, err := os.Stdout.Write(out); err != nil {
		o.Fail(err)
	}
	if err := seg.Detach(); err != nil {
		o.Fail(err)
	}
}

var errTooLong = errors.New("line too long")

// readLine returns the first line without its newline (a last line without
// one counts), io.EOF when there is no line at all, errTooLong past room bytes.
// The writer-truncate fault drops the bytes past room instead; the
// writer-streams-line fault copies each byte into stream as it comes.
func readLine(r *bufio.Reader, room int, stream []byte) ([]byte, error) {
	var line []byte
	for {
		b, err := r.ReadByte()
		if err == io.EOF {
			if line == nil {
				return nil, io.EOF
			}
			return line, nil
		}
		if err != nil {
			return nil, err
		}
		if b == '\n' {
			if line == nil {
				line = []byte{}
			}
			return line, nil
		}
		if len(line) == room {
			if sysv.Fault("writer-truncate") {
				continue
			}
			return nil, errTooLong
		}
		line = append(line, b)
		if stream != nil {
			stream[len(line)-1] = b
		}
	}
}
