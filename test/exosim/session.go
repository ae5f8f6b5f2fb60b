package exosim

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/mail"
	"strings"

	"github.com/emersion/go-smtp"
)

// session is one SMTP session, from EHLO to the end of the connection or the
// next STARTTLS (go-smtp starts a new session after TLS). go-smtp calls its
// methods from the connection's goroutine only.
type session struct {
	sim *Sim
	raw net.Conn             // the TCP connection under any TLS, for Drop
	tls *tls.ConnectionState // nil before STARTTLS

	user string // authenticated mailbox, lower case
	slot string // limiter key whose connection slot this session holds

	certName    string // connector: the client certificate's matching name
	certChecked bool

	from  string
	rcpts []string
}

func (s *Sim) newSession(c *smtp.Conn) (smtp.Session, error) {
	ss := &session{sim: s, raw: c.Conn()}
	if tc, ok := ss.raw.(*tls.Conn); ok {
		st := tc.ConnectionState()
		ss.tls = &st
		ss.raw = tc.NetConn()
	}
	return ss, nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.from, ss.rcpts = "", nil
	if r, ok := ss.sim.script.next(StageMail); ok && !r.success() {
		return ss.scripted(r)
	}
	if ss.sim.opt.Mode == ModeConnector {
		return ss.connectorMail(from)
	}
	switch {
	case ss.tls == nil:
		return ss.sim.refuse(replyMustStartTLS())
	case ss.user == "":
		return ss.sim.refuse(replyNotAuthenticated())
	case !ss.sim.opt.maySendAs(ss.user, from):
		return ss.sim.refuse(replySendAsDenied())
	}
	ss.from = from
	return nil
}

// connectorMail is MAIL FROM on the MX host: TLS first, then the sender must
// be attributable to the tenant, then one connection slot per sender.
func (ss *session) connectorMail(from string) error {
	if ss.tls == nil {
		return ss.sim.refuse(replyConnectorNeedsTLS())
	}
	if !ss.connectorAllows(from) {
		return ss.sim.refuse(replyRelayDenied())
	}
	key := strings.ToLower(from)
	if ss.slot != key {
		if !ss.sim.limits.acquire(key) {
			return ss.sim.refuse(replyTooManyConnections())
		}
		if ss.slot != "" {
			ss.sim.limits.release(ss.slot)
		}
		ss.slot = key
	}
	ss.from = from
	return nil
}

// connectorAllows decides tenant attribution: a client certificate that
// matches the certificate connector allows any sender; otherwise the sender
// must be in an accepted domain, and a certificate connector allows nothing.
func (ss *session) connectorAllows(addr string) bool {
	if ss.clientCertName() != "" {
		return true
	}
	return !ss.sim.opt.RequireClientCert && ss.sim.opt.domainAccepted(addr)
}

// clientCertName returns the name under which the client certificate matches
// Options.ConnectorCertName, or "" when there is none, it does not chain to
// the simulator's CA, or it names something else.
func (ss *session) clientCertName() string {
	if ss.certChecked {
		return ss.certName
	}
	ss.certChecked = true
	want := ss.sim.opt.ConnectorCertName
	if want == "" || ss.tls == nil || len(ss.tls.PeerCertificates) == 0 {
		return ""
	}
	leaf := ss.tls.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range ss.tls.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         ss.sim.pki.pool,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		ss.sim.logf("client certificate %q refused: %v", leaf.Subject.CommonName, err)
		return ""
	}
	for _, name := range append([]string{leaf.Subject.CommonName}, leaf.DNSNames...) {
		if strings.EqualFold(name, want) {
			ss.certName = leaf.Subject.CommonName
			return ss.certName
		}
	}
	ss.sim.logf("client certificate %q does not name connector %q", leaf.Subject.CommonName, want)
	return ""
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if r, ok := ss.sim.script.next(StageRcpt); ok && !r.success() {
		return ss.scripted(r)
	}
	if len(ss.rcpts) >= ss.sim.opt.MaxRecipientsPerMessage {
		return ss.sim.refuse(replyTooManyRecipients())
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if errors.Is(err, smtp.ErrDataTooLarge) {
		return ss.sim.refuse(replyTooLarge())
	}
	if err != nil {
		return err
	}
	scripted, hasScript := ss.sim.script.next(StageData)
	if hasScript && !scripted.success() {
		return ss.scripted(scripted)
	}
	if err := ss.checkHeaderFrom(data); err != nil {
		return err
	}
	key := ss.slot
	if !ss.sim.limits.admit(key, len(ss.rcpts), ss.sim.opt.Now()) {
		return ss.sim.refuse(replyQuotaExceeded())
	}
	id := ss.sim.record(Message{
		From:       ss.from,
		Rcpt:       ss.rcpts,
		Data:       data,
		AuthUser:   ss.user,
		ClientCert: ss.certName,
	})
	if hasScript {
		return ss.scripted(scripted)
	}
	return replyQueued(id)
}

// checkHeaderFrom applies the MAIL FROM rule to every address of the header
// From, which is what Exchange actually checks for Send As.
func (ss *session) checkHeaderFrom(data []byte) error {
	deny := replySendAsDenied
	allowed := func(addr string) bool { return ss.sim.opt.maySendAs(ss.user, addr) }
	if ss.sim.opt.Mode == ModeConnector {
		deny, allowed = replyRelayDenied, ss.connectorAllows
	}
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		ss.sim.logf("message header unreadable, From not checked: %v", err)
		return nil
	}
	list, err := msg.Header.AddressList("From")
	if errors.Is(err, mail.ErrHeaderNotPresent) {
		return nil
	}
	if err != nil {
		ss.sim.logf("header From %q unparsable: %v", msg.Header.Get("From"), err)
		return ss.sim.refuse(deny())
	}
	for _, a := range list {
		if !allowed(a.Address) {
			return ss.sim.refuse(deny())
		}
	}
	return nil
}

// scripted gives a scripted reply, or drops the connection.
func (ss *session) scripted(r Reply) error {
	if r.Drop {
		ss.sim.countDrop()
		ss.raw.Close()
		// go-smtp's attempt to write this fails: the client sees no reply.
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "connection dropped by script"}
	}
	return ss.sim.refuse(r.err())
}

func (ss *session) Reset() {
	ss.from, ss.rcpts = "", nil
}

// Logout gives back the connection slot; go-smtp calls it when the
// connection ends and before a STARTTLS.
func (ss *session) Logout() error {
	if ss.slot != "" {
		ss.sim.limits.release(ss.slot)
		ss.slot = ""
	}
	return nil
}
