package sendmail

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestReadMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		in         string
		ignoreDots bool
		want       string
	}{
		{"bare LF becomes CRLF", "Subject: x\n\nline\n", false, "Subject: x\r\n\r\nline\r\n"},
		{"CRLF kept", "Subject: x\r\n\r\nline\r\n", false, "Subject: x\r\n\r\nline\r\n"},
		{"last line without newline", "Subject: x\n\nline", false, "Subject: x\r\n\r\nline\r\n"},
		{"a lone dot ends the message", "Subject: x\n\nbefore\n.\nafter\n", false, "Subject: x\r\n\r\nbefore\r\n"},
		{"a lone dot with CRLF too", "Subject: x\r\n\r\nbefore\r\n.\r\nafter\r\n", false, "Subject: x\r\n\r\nbefore\r\n"},
		{"-i keeps the dot", "Subject: x\n\nbefore\n.\nafter\n", true, "Subject: x\r\n\r\nbefore\r\n.\r\nafter\r\n"},
		{"dots inside lines are text", "Subject: x\n\n..\n. \n.x\n", false, "Subject: x\r\n\r\n..\r\n. \r\n.x\r\n"},
		{"mbox From_ line dropped", "From root Tue Dec  1 10:00:00 2026\nSubject: x\n\nb\n", false, "Subject: x\r\n\r\nb\r\n"},
		{"From_ only on the first line", "Subject: x\n\nFrom here on\n", false, "Subject: x\r\n\r\nFrom here on\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ReadMessage(strings.NewReader(tt.in), tt.ignoreDots)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// What cron, mail and scripts write, and what goes to the server.
func TestPrepare(t *testing.T) {
	t.Parallel()
	conf := Conf{LocalDomain: "host.contoso.com",
		Aliases: map[string][]string{"root": {"ops@contoso.com"}, "team": {"a@contoso.com", "b"}}}
	tests := []struct {
		name   string
		args   []string
		in     string
		wantTo []string
		want   string
	}{
		{"cronie: local From removed, To aliased, envelope from the header",
			[]string{"-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f", "root"},
			"From: root (Cron Daemon)\r\nTo: root\r\nSubject: Cron <root@h> ls\r\n\r\nout\r\n", nil,
			"To: ops@contoso.com\r\nSubject: Cron <root@h> ls\r\n\r\nout\r\n"},
		{"newer cronie writes a quoted name",
			[]string{"-t", "-f", "root"},
			"From: \"(Cron Daemon)\" <root>\r\nTo: deploy\r\n\r\nout\r\n", nil,
			"To: deploy@host.contoso.com\r\n\r\nout\r\n"},
		{"Debian cron: operand qualified, header To rewritten",
			[]string{"-FCronDaemon", "-i", "-B8BITMIME", "-oem", "deploy"},
			"From: root (Cron Daemon)\r\nTo: deploy\r\nSubject: Cron\r\n\r\nout\r\n", []string{"deploy@host.contoso.com"},
			"To: deploy@host.contoso.com\r\nSubject: Cron\r\n\r\nout\r\n"},
		{"an address From stays byte for byte",
			[]string{"-t", "-i"},
			"From: Shop <shop@alerts.contoso.com>\r\nTo: a@contoso.com,\r\n b@contoso.com\r\n\r\nx\r\n", nil,
			"From: Shop <shop@alerts.contoso.com>\r\nTo: a@contoso.com,\r\n b@contoso.com\r\n\r\nx\r\n"},
		{"no From: -f and -F make one",
			[]string{"-t", "-F", "Web Shop", "-f", "shop@alerts.contoso.com"},
			"To: a@contoso.com\r\n\r\nx\r\n", nil,
			"From: \"Web Shop\" <shop@alerts.contoso.com>\r\nTo: a@contoso.com\r\n\r\nx\r\n"},
		{"no From and a local -f: the server's default",
			[]string{"-t", "-f", "root"},
			"To: a@contoso.com\r\n\r\nx\r\n", nil,
			"To: a@contoso.com\r\n\r\nx\r\n"},
		{"-t with operands adds them (as Postfix does)",
			[]string{"-t", "extra@contoso.com"},
			"To: a@contoso.com, team\r\nBcc: hidden@contoso.com\r\n\r\nx\r\n",
			[]string{"extra@contoso.com", "a@contoso.com", "b@host.contoso.com", "hidden@contoso.com"},
			"To: a@contoso.com, a@contoso.com, b@host.contoso.com\r\nBcc: hidden@contoso.com\r\n\r\nx\r\n"},
		{"a body without a header",
			[]string{"x@contoso.com"},
			"hello world\r\n", []string{"x@contoso.com"},
			"\r\nhello world\r\n"},
		{"a header without a body",
			[]string{"x@contoso.com"},
			"Subject: only\r\n", []string{"x@contoso.com"},
			"Subject: only\r\n\r\n"},
		{"groups and names are left alone",
			[]string{"-t"},
			"To: undisclosed-recipients:;\r\nCc: \"Doe, John\" <john@contoso.com>, root <root>\r\n\r\nx\r\n", nil,
			"To: undisclosed-recipients:;\r\nCc: \"Doe, John\" <john@contoso.com>, root <ops@contoso.com>\r\n\r\nx\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o, err := Parse(tt.args)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Prepare([]byte(tt.in), o, conf)
			if err != nil {
				t.Fatal(err)
			}
			if string(p.Body) != tt.want {
				t.Errorf("body\n got %q\nwant %q", p.Body, tt.want)
			}
			if !reflect.DeepEqual(p.To, tt.wantTo) {
				t.Errorf("envelope %q, want %q", p.To, tt.wantTo)
			}
		})
	}
}

func TestPrepareRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		in   string
		conf Conf
		want int
	}{
		{"no recipients", nil, "Subject: x\r\n\r\n", Conf{}, ExitUsage},
		{"-t and no recipient header", []string{"-t"}, "Subject: x\r\n\r\n", Conf{}, ExitUsage},
		{"local operand without a rule", []string{"root"}, "Subject: x\r\n\r\n", Conf{}, ExitNoUser},
		{"local To without a rule", []string{"-t"}, "To: root\r\n\r\n", Conf{}, ExitNoUser},
		{"alias to a local name without a domain", []string{"root"}, "\r\n", Conf{Aliases: map[string][]string{"root": {"admin"}}}, ExitNoUser},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o, err := Parse(tt.args)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Prepare([]byte(tt.in), o, tt.conf)
			if err == nil {
				t.Fatal("Prepare accepted it")
			}
			if got := exitFor(err); got != tt.want {
				t.Errorf("exit %d (%v), want %d", got, err, tt.want)
			}
			var n *NoUserError
			if errors.As(err, &n) && !strings.Contains(err.Error(), "local_domain") {
				t.Errorf("the message does not say how to fix it: %v", err)
			}
		})
	}
}
