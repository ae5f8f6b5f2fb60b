package main

import (
	"io"
	"path/filepath"

	"github.com/mailgate/mailgate/internal/sendmail"
)

// sendmailName reports whether the binary runs under one of sendmail's
// names (a /usr/sbin/sendmail symlink or copy, or the mailq and newaliases
// links an MTA package leaves pointing at it), where callers pass
// sendmail's options without a "sendmail" command word; mode is the option
// that name stands for.
func sendmailName(argv0 string) (mode []string, ok bool) {
	switch filepath.Base(argv0) {
	case "sendmail":
		return nil, true
	case "mailq":
		return []string{"-bp"}, true
	case "newaliases":
		return []string{"-bi"}, true
	}
	return nil, false
}

func cmdSendmail(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	return sendmail.Main(sendmail.Env{Args: args, Stdin: stdin, Stdout: stdout, Stderr: stderr,
		Getenv: getenv, Version: version})
}
