package sendmail

import (
	"errors"
	"reflect"
	"testing"
)

// The exact argument lists real callers pass.
func TestParseCallers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		caller string
		args   []string
		want   Options
	}{
		{"cronie", []string{"-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f", "root"},
			Options{Extract: true, IgnoreDots: true, Sender: "root", FullName: "CronDaemon"}},
		{"Debian cron", []string{"-FCronDaemon", "-i", "-B8BITMIME", "-oem", "user"},
			Options{Recipients: []string{"user"}, IgnoreDots: true, FullName: "CronDaemon"}},
		{"PHP mail()", []string{"-t", "-i"}, Options{Extract: true, IgnoreDots: true}},
		{"PHP mail() with -f", []string{"-t", "-i", "-fbounce@contoso.com"},
			Options{Extract: true, IgnoreDots: true, Sender: "bounce@contoso.com"}},
		{"Debian bsd-mailx", []string{"-i", "-t"}, Options{Extract: true, IgnoreDots: true}},
		{"Debian bsd-mailx -r", []string{"-i", "-t", "-f", "me@contoso.com"},
			Options{Extract: true, IgnoreDots: true, Sender: "me@contoso.com"}},
		{"mailx (other builds)", []string{"-oi", "-f", "me@contoso.com", "-t"},
			Options{Extract: true, IgnoreDots: true, Sender: "me@contoso.com"}},
		{"logwatch, mdadm", []string{"-t"}, Options{Extract: true}},
		{"clustered", []string{"-ti", "-r", "a@b.c"}, Options{Extract: true, IgnoreDots: true, Sender: "a@b.c"}},
		{"glued -r", []string{"-ra@b.c", "x@y.z"}, Options{Sender: "a@b.c", Recipients: []string{"x@y.z"}}},
		{"operands first (glibc permutes)", []string{"x@y.z", "-i"}, Options{IgnoreDots: true, Recipients: []string{"x@y.z"}}},
		{"-- ends options", []string{"-i", "--", "-odd@y.z"}, Options{IgnoreDots: true, Recipients: []string{"-odd@y.z"}}},
		{"ignored options", []string{"-N", "never", "-R", "hdrs", "-V", "envid", "-X", "/tmp/log", "-h", "10",
			"-L", "tag", "-p", "esmtp", "-C/etc/mail/sendmail.cf", "-v", "-G", "-U", "-m", "-n", "-d0.1", "-O", "DeliveryMode=b", "-oQ/tmp", "-bm", "u@v.w"},
			Options{Verbose: true, Recipients: []string{"u@v.w"}}},
		{"-O IgnoreDots", []string{"-OIgnoreDots=true", "u@v.w"}, Options{IgnoreDots: true, Recipients: []string{"u@v.w"}}},
		{"-o i separated", []string{"-o", "i", "u@v.w"}, Options{IgnoreDots: true, Recipients: []string{"u@v.w"}}},
		{"--flush", []string{"--flush", "--config=/x.conf"}, Options{Flush: true, ConfigPath: "/x.conf"}},
		{"-q", []string{"-q", "--config", "/x.conf"}, Options{Flush: true, ConfigPath: "/x.conf"}},
		{"newaliases", []string{"-bi"}, Options{Mode: ModeNewAliases}},
		{"-I", []string{"-I"}, Options{Mode: ModeNewAliases}},
		{"mailq", []string{"-bp"}, Options{Mode: ModeQueue}},
		{"Symfony Mailer", []string{"-bs"}, Options{Mode: ModeSMTP}},
		{"Laravel", []string{"-bs", "-i"}, Options{Mode: ModeSMTP, IgnoreDots: true}},
	}
	for _, tt := range tests {
		t.Run(tt.caller, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tt.args)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.args, err)
			}
			if tt.want.Mode == 0 {
				tt.want.Mode = ModeDeliver
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q)\n got %+v\nwant %+v", tt.args, got, tt.want)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-k"},                       // no such option
		{"-f"},                       // missing value
		{"-t", "-F"},                 // missing value
		{"--config"},                 // missing file
		{"--nope"},                   // unknown long option
		{"-bs", "-t"},                // SMTP takes its recipients from RCPT TO
		{"-bd"},                      // daemon mode
		{"--flush", "x@contoso.com"}, // flush takes no recipients
	} {
		_, err := Parse(args)
		var u *UsageError
		if !errors.As(err, &u) {
			t.Errorf("Parse(%q) = %v, want a UsageError", args, err)
		}
	}
}
