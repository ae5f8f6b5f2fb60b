package exosim_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/wneessen/go-mail/smtp"

	"github.com/mailgate/mailgate/test/exosim"
	"github.com/mailgate/mailgate/test/testclock"
)

func TestConcurrentConnectionLimit(t *testing.T) {
	t.Parallel()
	sim := exosim.Start(t, submissionOptions())

	var held []*smtp.Client
	for range 3 {
		held = append(held, login(t, sim, alice, alicePW))
	}
	exosim.WantReply(t, sim.DialTLS(t).Auth(smtp.PlainAuth("", alice, alicePW, sim.Host(), false)), 432, "4.3.2")
	login(t, sim, relay, relayPW) // the limit is per mailbox

	// Once one connection ends, its slot is free again.
	if err := held[0].Quit(); err != nil {
		t.Fatal(err)
	}
	sim.WaitStats(t, waitLong, "2 connections for alice", func(st exosim.Stats) bool {
		return st.ActiveConnections[alice] == 2
	})
	login(t, sim, alice, alicePW)

	st := sim.Stats()
	if st.MaxConcurrent[alice] != 3 || st.MaxConcurrent[relay] != 1 || st.Replies["4.3.2"] != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestMessagesPerMinuteRecorded(t *testing.T) {
	t.Parallel()
	clock := testclock.New(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	opt := submissionOptions()
	opt.Now = clock.Now
	sim := exosim.Start(t, opt)
	c := login(t, sim, alice, alicePW)

	// 30 messages, one every 2 seconds, stay within the limit.
	for range 30 {
		if err := send(c, alice, []string{"ops@contoso.com"}, message(alice)); err != nil {
			t.Fatal(err)
		}
		clock.Advance(2 * time.Second)
	}
	if st := sim.Stats(); st.MaxMessagesInAnyMinute[alice] != 30 || st.OverMinuteLimit[alice] != 0 {
		t.Fatalf("after 30 in a minute: %+v", st)
	}
	// Two more at once: the window still holds the last 29, so both are
	// over; Exchange would delay them, the simulator takes and counts them.
	for range 2 {
		if err := send(c, alice, []string{"ops@contoso.com"}, message(alice)); err != nil {
			t.Fatal(err)
		}
	}
	if st := sim.Stats(); st.MaxMessagesInAnyMinute[alice] != 31 || st.OverMinuteLimit[alice] != 1 || st.Messages != 32 {
		t.Errorf("after a burst: %+v", st)
	}
}

func TestRecipientsPerDay(t *testing.T) {
	t.Parallel()
	clock := testclock.New(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	opt := submissionOptions()
	opt.Now = clock.Now
	opt.RecipientsPerDay = 5
	sim := exosim.Start(t, opt)
	c := login(t, sim, alice, alicePW)
	rcpts := func(n int) []string {
		var r []string
		for i := range n {
			r = append(r, fmt.Sprintf("user%d@contoso.com", i))
		}
		return r
	}

	if err := send(c, alice, rcpts(3), message(alice)); err != nil {
		t.Fatal(err)
	}
	clock.Advance(12 * time.Hour)
	exosim.WantReply(t, send(c, alice, rcpts(3), message(alice)), 554, "5.2.0")
	if err := send(c, alice, rcpts(2), message(alice)); err != nil {
		t.Fatalf("up to the quota: %v", err)
	}
	// The first 3 leave the rolling day 12 hours later.
	clock.Advance(12*time.Hour + time.Second)
	if err := send(c, alice, rcpts(3), message(alice)); err != nil {
		t.Fatalf("after the window moved: %v", err)
	}
	if st := sim.Stats(); st.Replies["5.2.0"] != 1 || st.Messages != 3 {
		t.Errorf("stats = %+v", st)
	}
}

func TestRecipientsPerMessage(t *testing.T) {
	t.Parallel()
	opt := submissionOptions()
	opt.MaxRecipientsPerMessage = 2
	sim := exosim.Start(t, opt)
	c := login(t, sim, alice, alicePW)
	exosim.WantReply(t, send(c, alice, []string{"a@contoso.com", "b@contoso.com", "c@contoso.com"}, message(alice)), 452, "4.5.3")
}

func TestOpenConnectionsAndClose(t *testing.T) {
	t.Parallel()
	sim := exosim.Start(t, submissionOptions())
	a := login(t, sim, alice, alicePW)
	sim.Dial(t)
	sim.WaitStats(t, waitLong, "2 open connections", func(st exosim.Stats) bool { return st.OpenConnections == 2 })

	if err := a.Quit(); err != nil {
		t.Fatal(err)
	}
	sim.WaitStats(t, waitLong, "1 open connection", func(st exosim.Stats) bool {
		return st.OpenConnections == 1 && st.ActiveConnections[alice] == 0
	})

	// Close ends the connection the client left open, and waits for it.
	sim.Close()
	if st := sim.Stats(); st.OpenConnections != 0 || st.Connections != 2 {
		t.Errorf("after Close: %+v", st)
	}
	sim.Close() // a second Close, like the one t.Cleanup makes, does nothing
}
