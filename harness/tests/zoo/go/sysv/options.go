package sysv

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Options are the contract's command-line options, parsed by package flag.
type Options struct {
	KeyFile   string
	ProjID    int
	KeyHex    string
	Size      int
	Mode      string
	Exclusive bool
	Keep      bool
	Prog      string
}

// Parse reads the options; writer says which role-only option exists.
func Parse(prog string, writer bool) *Options {
	o := &Options{Prog: prog}
	fs := flag.NewFlagSet(prog, flag.ExitOnError)
	fs.StringVar(&o.KeyFile, "key-file", "shmfile", "file for ftok")
	fs.IntVar(&o.ProjID, "proj-id", 65, "ftok project id")
	fs.StringVar(&o.KeyHex, "key", "", "explicit key in hexadecimal")
	fs.IntVar(&o.Size, "size", 1024, "segment size in bytes")
	fs.StringVar(&o.Mode, "mode", "666", "octal permission bits of a created segment")
	if writer {
		fs.BoolVar(&o.Exclusive, "exclusive", false, "fail if the segment exists")
	} else {
		fs.BoolVar(&o.Keep, "keep", false, "do not remove the segment")
	}
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() != 0 {
		o.Usage("stray argument %q", fs.Arg(0))
	}
	if o.Size < 1 {
		o.Usage("-size must be positive, not %d", o.Size)
	}
	return o
}

// Usage fails as package flag does: status 2.
func (o *Options) Usage(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s: %s\n", o.Prog, fmt.Sprintf(format, args...))
	os.Exit(2)
}

// Fail reports a runtime failure: status 1.
func (o *Options) Fail(err error) {
	if Fault("writer-silent-exit") && strings.Contains(o.Prog, "writer") {
		os.Exit(0)
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", o.Prog, err)
	os.Exit(1)
}

// Perm is the -mode value.
func (o *Options) Perm() int {
	m, err := strconv.ParseUint(o.Mode, 8, 32)
	if err != nil || m > 0o777 {
		o.Usage("-mode wants octal bits up to 777, not %q", o.Mode)
	}
	return int(m)
}

// Key is -key, or ftok of -key-file and -proj-id.
func (o *Options) Key() (Key, error) {
	if o.KeyHex != "" {
		k, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimPrefix(o.KeyHex, "0x"), "0X"), 16, 32)
		if err != nil {
			o.Usage("-key wants a 32-bit hexadecimal key, not %q", o.KeyHex)
		}
		if k == 0 {
			o.Usage("-key 0 is IPC_PRIVATE: nobody else could find the segment")
		}
		return Key(int32(uint32(k))), nil
	}
	proj := o.ProjID
	if Fault("wrong-proj-id") {
		proj++
	}
	return Ftok(o.KeyFile, proj)
}
