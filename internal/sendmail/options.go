package sendmail

import (
	"fmt"
	"strings"
)

// Options is what a sendmail command line asks for.
type Options struct {
	Recipients []string // the operands, in order
	Extract    bool     // -t: recipients from To, Cc and Bcc as well
	IgnoreDots bool     // -i, -oi: a line with a single dot does not end the message
	Sender     string   // -f, -r: the envelope sender
	FullName   string   // -F: the sender's full name
	Verbose    bool     // -v: say what the server answered

	ConfigPath string // --config
	Flush      bool   // --flush, -q: re-send the spool instead of reading a message
	Mode       Mode   // -b
	Help       bool   // --help
}

// Mode is sendmail's -b operating mode.
type Mode byte

const (
	ModeDeliver    Mode = 'm' // -bm, the default: read a message and send it
	ModeNewAliases Mode = 'i' // -bi, -I: rebuild the aliases database (nothing to do here)
	ModeQueue      Mode = 'p' // -bp: list the spool
	ModeSMTP       Mode = 's' // -bs: speak SMTP on stdin and stdout (Symfony Mailer, Laravel)
)

// UsageError is a command line that cannot be obeyed; it exits EX_USAGE.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error {
	return &UsageError{fmt.Sprintf(format, args...)}
}

// Option letters, as in Sendmail 8's getopt string. argRequired letters take
// the rest of the argument or, when that is empty, the next argument
// (-f root, -froot); argGlued letters take only the rest of the argument
// (-q, -q15m, -d, -d0.1). Everything else is a flag and may be clustered
// (-ti).
const (
	argRequired = "ABCFLMNORVXbfhopr"
	argGlued    = "dq"
	flags       = "GIUcimnstv"
)

// Parse reads a sendmail command line the way sendmail's getopt does on
// glibc: options may be clustered (-it) and glued to their argument
// (-FCronDaemon, -B8BITMIME, -oem), operands and options may be mixed, and
// "--" ends the options. Options that mean nothing for a submission to
// mailgate (-B, -N, -R, -V, -X, -L, -h, -p, -C, -odi, -oem, ...) are
// accepted and ignored, as Postfix's sendmail does.
func Parse(args []string) (Options, error) {
	o := Options{Mode: ModeDeliver}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			o.Recipients = append(o.Recipients, args[i+1:]...)
			return o, o.check()
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			switch name {
			case "flush":
				o.Flush = true
			case "help":
				o.Help = true
			case "config":
				if !hasVal {
					if i+1 >= len(args) {
						return o, usagef("--config needs a file name")
					}
					i++
					val = args[i]
				}
				if val == "" {
					return o, usagef("--config needs a file name")
				}
				o.ConfigPath = val
			default:
				return o, usagef("unknown option %s", a)
			}
			continue
		case len(a) < 2 || a[0] != '-':
			o.Recipients = append(o.Recipients, a)
			continue
		}
		// A cluster of single-letter options.
		for j := 1; j < len(a); j++ {
			c := a[j]
			rest := a[j+1:]
			switch {
			case strings.IndexByte(flags, c) >= 0:
				o.flag(c)
			case strings.IndexByte(argGlued, c) >= 0:
				if c == 'q' {
					o.Flush = true
				}
				j = len(a)
			case strings.IndexByte(argRequired, c) >= 0:
				val := rest
				if val == "" {
					if i+1 >= len(args) {
						return o, usagef("option -%c needs a value", c)
					}
					i++
					val = args[i]
				}
				if err := o.value(c, val); err != nil {
					return o, err
				}
				j = len(a)
			default:
				return o, usagef("unknown option -%c", c)
			}
		}
	}
	return o, o.check()
}

func (o *Options) flag(c byte) {
	switch c {
	case 'i':
		o.IgnoreDots = true
	case 't':
		o.Extract = true
	case 'v':
		o.Verbose = true
	case 'I':
		o.Mode = ModeNewAliases
	}
	// -G, -U, -c, -m, -n, -s: submission and alias details that a
	// submission to mailgate has no use for.
}

func (o *Options) value(c byte, v string) error {
	switch c {
	case 'f', 'r':
		o.Sender = v
	case 'F':
		o.FullName = v
	case 'o':
		// -oi is IgnoreDots; -oem (errors by mail), -odi (deliver
		// interactively) and the other -oX options change how a local MTA
		// works, not what is sent.
		if v == "i" {
			o.IgnoreDots = true
		}
	case 'O':
		name, val, _ := strings.Cut(v, "=")
		if strings.EqualFold(name, "IgnoreDots") && (val == "" || strings.EqualFold(val, "true")) {
			o.IgnoreDots = true
		}
	case 'b':
		switch v {
		case "m":
			o.Mode = ModeDeliver
		case "i":
			o.Mode = ModeNewAliases
		case "p":
			o.Mode = ModeQueue
		case "s":
			o.Mode = ModeSMTP
		default:
			return usagef("-b%s is not supported (mailgate sendmail only delivers: -bm)", v)
		}
	}
	return nil
}

func (o *Options) check() error {
	if o.Flush && len(o.Recipients) > 0 {
		return usagef("--flush takes no recipients")
	}
	if o.Mode == ModeSMTP && (len(o.Recipients) > 0 || o.Extract) {
		return usagef("-bs takes its recipients from RCPT TO, not from arguments or -t")
	}
	return nil
}
