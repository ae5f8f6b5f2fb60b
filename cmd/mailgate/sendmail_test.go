package main

import (
	"strings"
	"testing"
)

func TestInvokedAsSendmail(t *testing.T) {
	t.Parallel()
	for argv0, want := range map[string]bool{
		"/usr/sbin/sendmail": true, "sendmail": true, "/usr/lib/sendmail": true,
		"/usr/local/bin/mailgate": false, "mailgate": false, "/usr/sbin/sendmail.postfix": false,
	} {
		if got := invokedAsSendmail(argv0); got != want {
			t.Errorf("invokedAsSendmail(%q) = %v, want %v", argv0, got, want)
		}
	}
}

// `mailgate sendmail` is wired: a bad option exits EX_USAGE with one line.
func TestSendmailSubcommand(t *testing.T) {
	t.Parallel()
	var stdout, stderr strings.Builder
	code := run([]string{"sendmail", "-bd"}, &stdout, &stderr, func(string) string { return "" })
	if code != 64 || !strings.HasPrefix(stderr.String(), "mailgate sendmail: -bd") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}
