package main

import (
	"strings"
	"testing"
)

func TestSendmailName(t *testing.T) {
	t.Parallel()
	for argv0, want := range map[string]string{
		"/usr/sbin/sendmail": "", "sendmail": "", "/usr/lib/sendmail": "",
		"/usr/bin/mailq": "-bp", "/usr/bin/newaliases": "-bi",
		"/usr/local/bin/mailgate": "no", "mailgate": "no", "/usr/sbin/sendmail.postfix": "no",
	} {
		mode, ok := sendmailName(argv0)
		got := strings.Join(mode, " ")
		if !ok {
			got = "no"
		}
		if got != want {
			t.Errorf("sendmailName(%q) = %q, want %q", argv0, got, want)
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
