package delivery

import (
	"context"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/test/exosim"
	"github.com/mailgate/mailgate/test/testclock"
)

// A session's LastUsed is read on the worker's clock, the one the worker
// compares it with to decide whether the session sat idle too long.
func TestConnLastUsedFollowsTheInjectedClock(t *testing.T) {
	t.Parallel()
	sim := exosim.Start(t, exosim.Options{Mailboxes: map[string]string{"relay@contoso.com": "pw"}})
	clock := testclock.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	route := &config.Route{Name: "m365", Type: config.RouteSMTPAuth, Host: sim.Host(), Port: sim.Port(),
		TLS:  config.RouteTLS{Mode: config.TLSStartTLS, CAFile: sim.CAFile()},
		Auth: config.RouteAuth{Mechanism: config.MechLogin, Username: "relay@contoso.com", Password: "pw"}}
	auth, err := AuthenticatorFor(route)
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDialer(route, DialerOptions{HelloName: "mailgate.test", Auth: auth, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.Dial(context.Background(), "relay@contoso.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.LastUsed.Equal(clock.Now()) {
		t.Fatalf("LastUsed after dial = %v, want the injected clock's %v", c.LastUsed, clock.Now())
	}
	clock.Advance(time.Hour)
	if _, err := c.Send("relay@contoso.com", []string{"ops@contoso.com"}, []byte("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	if !c.LastUsed.Equal(clock.Now()) {
		t.Fatalf("LastUsed after send = %v, want the injected clock's %v", c.LastUsed, clock.Now())
	}
}
