package sendmail

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	shim "github.com/mailgate/mailgate/internal/sendmail"
)

// Nothing is lost while the server is away: the message is spooled and the
// command exits 0 (cron discards mail on any other status); --flush sends
// it once the server is back, and a second flush sends nothing.
func TestSpoolWhileServerAway(t *testing.T) {
	s := startServer(t)
	tok := s.token("cron")
	spool := filepath.Join(t.TempDir(), "spool")
	in := invocation{conf: hostConf(t, "spool_dir = "+spool), url: s.base, tok: tok}
	cronie := []string{"-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f", "root"}
	msg := "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@web1> while away\n\nnightly output\n"

	s.stop()
	r := in.sendmail(t, msg, cronie...)
	if r.code != 0 {
		t.Fatalf("server away with a spool: exit %d, want 0 (stderr %q)", r.code, r.stderr)
	}
	checkReason(t, r.stderr, "spooled")
	if files := spoolFiles(t, spool); len(files) != 1 {
		t.Fatalf("spool holds %q, want one message", files)
	}
	if r := in.sendmail(t, "", "-bp"); r.code != 0 || !strings.Contains(r.stdout, "sendmail-") {
		t.Errorf("-bp: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// Still away: the flush keeps the message and says to try later.
	r = in.subcommand(t, "", "--flush")
	if r.code != 75 || len(spoolFiles(t, spool)) != 1 {
		t.Fatalf("flush while away: exit %d (stderr %q), spool %q", r.code, r.stderr, spoolFiles(t, spool))
	}

	s.up()
	in.url = s.base
	r = in.subcommand(t, "", "--flush")
	if r.code != 0 || !strings.Contains(r.stderr, "1 sent") {
		t.Fatalf("flush: exit %d, stderr %q", r.code, r.stderr)
	}
	if files := spoolFiles(t, spool); len(files) != 0 {
		t.Errorf("spool still holds %q after a flush that sent", files)
	}
	m := s.delivered(tok, "Cron <root@web1> while away")
	checkDelivered(t, m.Data, m.Rcpt, []string{"root@contoso.com"}, defaultFrom)

	r = in.sendmail(t, "", "-q")
	if r.code != 0 || r.stderr != "" {
		t.Errorf("second flush: exit %d, stderr %q, want 0 and silence", r.code, r.stderr)
	}
	if n := s.queued(); n != 1 {
		t.Errorf("%d messages queued after two flushes, want 1", n)
	}
}

// A flush that re-sends a message whose first answer was lost (stored by
// the server, but the client never heard) stores nothing new: it carries
// the message's Idempotency-Key. A message refused for good moves to
// failed/ with the reason.
func TestFlushIdempotentAndFailed(t *testing.T) {
	s := startServer(t)
	tok := s.token("cron")
	dir := filepath.Join(t.TempDir(), "spool")
	in := invocation{conf: hostConf(t, "spool_dir = "+dir), url: s.base, tok: tok}
	sp := shim.Spool{Dir: dir, Now: time.Now}

	body := []byte("From: ops@alerts.contoso.com\r\nTo: a@contoso.com\r\nSubject: answer lost\r\n\r\nx\r\n")
	const key = "sendmail-answer-lost"
	req, err := http.NewRequest("POST", s.base+"/v1/messages/raw", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "message/rfc822")
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("first submission: %s", resp.Status)
	}
	if _, err := sp.Put(shim.Entry{Key: key, Reason: "test: the answer was lost"}, body); err != nil {
		t.Fatal(err)
	}
	refused := []byte("From: boss@contoso.com\r\nTo: a@contoso.com\r\nSubject: not ours\r\n\r\nx\r\n")
	if _, err := sp.Put(shim.Entry{Key: "sendmail-refused", Reason: "test"}, refused); err != nil {
		t.Fatal(err)
	}

	r := in.subcommand(t, "", "--flush")
	if r.code != 0 || !strings.Contains(r.stderr, "1 sent, 1 moved to failed/") {
		t.Fatalf("flush: exit %d, stderr %q", r.code, r.stderr)
	}
	s.delivered(tok, "answer lost")
	if n := s.queued(); n != 1 {
		t.Errorf("%d messages queued, want 1: the flush stored the lost-answer message again", n)
	}
	reason, err := os.ReadFile(filepath.Join(dir, shim.FailedDir, "sendmail-refused.reason"))
	if err != nil || !strings.Contains(string(reason), "from_not_allowed") {
		t.Errorf("failed/sendmail-refused.reason: %q, %v", reason, err)
	}
	if files := spoolFiles(t, dir); len(files) != 0 {
		t.Errorf("spool still holds %q", files)
	}
}

// spoolFiles lists the messages waiting in dir.
func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.msg"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}
