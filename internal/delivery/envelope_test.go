package delivery

import (
	"context"
	"testing"
	"time"

	"github.com/wneessen/go-mail/smtp"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/internal/smtpreply"
	"github.com/mailgate/mailgate/test/postfixtest"
	"github.com/mailgate/mailgate/test/redistest"
	"github.com/mailgate/mailgate/test/testwait"
)

// The envelope is sent as RFC 5321 wants it, MAIL FROM:<addr> and RCPT
// TO:<addr>: a real Postfix with strict_rfc821_envelopes = yes, which
// answers 501 to a bare address, accepts mailgate's delivery.
func TestStrictServerAcceptsEnvelope(t *testing.T) {
	t.Parallel()
	pf := postfixtest.Start(t, postfixtest.Options{Main: map[string]string{"strict_rfc821_envelopes": "yes"}})

	// The peer is strict indeed: a bare address is refused.
	c, err := smtp.Dial(pf.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("mailgate.test"); err != nil {
		t.Fatal(err)
	}
	err = c.Mail("alerts@contoso.com")
	if r, ok := smtpreply.FromError(err); !ok || r.Code != 501 {
		t.Fatalf("MAIL FROM with a bare address: %v, want 501 from a strict Postfix", err)
	}
	_ = c.Close()

	rs := redistest.Start(t)
	q := queue.New(rs.Client(), queue.Options{})
	route := &config.Route{Name: "strict", Type: config.RouteSMTP, Host: pf.Host, Port: pf.Port,
		TLS: config.RouteTLS{Mode: config.TLSNone}}
	d, err := NewDialer(route, DialerOptions{HelloName: "mailgate.test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id, _, err := q.Enqueue(ctx, queue.Message{Route: route.Name, App: "test", From: "alerts@contoso.com",
		Recipients: []string{"ops@example.com", "dev@example.com"},
		Body:       []byte("From: alerts@contoso.com\r\nTo: ops@example.com\r\nSubject: strict\r\n\r\nhello\r\n")})
	if err != nil {
		t.Fatal(err)
	}
	w := NewWorker(WorkerOptions{Route: route, Queue: q, Dialer: d, Policy: Policy{MaxAge: time.Minute,
		BackoffInitial: time.Second, BackoffMax: time.Second, Lease: 30 * time.Second,
		IdleTimeout: time.Second, PollInterval: 20 * time.Millisecond}})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })

	var st *queue.Status
	testwait.Until(t, 20*time.Second, func() bool {
		st, err = q.Get(ctx, route.Name, id)
		return err == nil && (st.Status == queue.StatusSent || st.Status == queue.StatusFailed)
	}, "the message to be sent or failed")
	if st.Status != queue.StatusSent {
		t.Fatalf("message is %s (%+v), want sent; Postfix log:\n%s", st.Status, st.Events, pf.Log())
	}
}
