package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/test/testwait"
)

// A client that lost the door's 250 (the connection broke after the end of
// data) sends the message again on a new connection, byte for byte, as
// Postfix does from its queue. A message carrying its own Message-ID is
// then queued once: the second 250 names the first id and one copy
// reaches Exchange. Messages without a Message-ID, and messages that differ
// in anything, are never merged: a device sending the same alert twice
// means it twice.
func TestSMTPRetryAfterLostReplyQueuedOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withSMTP(t, nil))
	e.start(gateway.RoleAll)
	const sender = "scanner@alerts.contoso.com"
	from := "Scanner <" + sender + ">"
	send := func(msg string) string {
		t.Helper()
		c := dialSMTP(t, e.smtpAddr, listedIP)
		c.send("EHLO scanner.lan", 250)
		c.send("MAIL FROM:<"+sender+">", 250)
		c.send("RCPT TO:<ops@contoso.com>", 250)
		c.send("DATA", 354)
		code, reply := c.data(msg)
		c.send("QUIT", 221)
		return queuedID(t, fmt.Sprintf("%d %s", code, reply))
	}

	msg := message(from, "ops@contoso.com", "lost-250")
	first, again := send(msg), send(msg)
	if again != first {
		t.Fatalf("the same message (same Message-ID, same bytes) sent again was queued as %s, then %s", first, again)
	}
	e.wantDelivered(e.token("scanner"), first, "lost-250", msg, "ESMTP")

	edited := strings.Replace(msg, "Page 1 of the scan", "Page 2 of the scan", 1)
	if id := send(edited); id == first {
		t.Errorf("a different body under the same Message-ID was merged into %s", first)
	}
	var noID []string
	for _, l := range strings.SplitAfter(message(from, "ops@contoso.com", "no-message-id"), "\r\n") {
		if !strings.HasPrefix(l, "Message-ID:") {
			noID = append(noID, l)
		}
	}
	bare := strings.Join(noID, "")
	if a, b := send(bare), send(bare); a == b {
		t.Errorf("two identical messages without a Message-ID were merged into %s", a)
	}
	testwait.Until(t, 30*time.Second, func() bool { return e.countAtSimulator("Subject: lost-250\r\n") >= 2 },
		"the edited message at the simulator")
	testwait.Until(t, 30*time.Second, func() bool { return e.countAtSimulator("Subject: no-message-id\r\n") == 2 },
		"both messages without a Message-ID at the simulator")
	if n := e.countAtSimulator("Subject: lost-250\r\n"); n != 2 {
		t.Errorf("%d messages tagged lost-250 at Exchange, want 2 (the first, once, and the edited one)", n)
	}
}

// countAtSimulator counts the messages at the simulator that contain s.
func (e *env) countAtSimulator(s string) int {
	n := 0
	for _, m := range e.sim.Messages() {
		if strings.Contains(string(m.Data), s) {
			n++
		}
	}
	return n
}
