package main

import (
	"io"
	"path/filepath"

	"github.com/mailgate/mailgate/internal/sendmail"
)

// invokedAsSendmail reports whether the binary runs under sendmail's name
// (a /usr/sbin/sendmail symlink or copy), where callers pass sendmail's
// options without a "sendmail" command word.
func invokedAsSendmail(argv0 string) bool {
	return filepath.Base(argv0) == "sendmail"
}

func cmdSendmail(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	return sendmail.Main(sendmail.Env{Args: args, Stdin: stdin, Stdout: stdout, Stderr: stderr,
		Getenv: getenv, Version: version})
}
