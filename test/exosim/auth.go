package exosim

import (
	"bytes"
	"errors"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// AuthMechanisms advertises Exchange's SMTP AUTH mechanisms, and only after
// STARTTLS, as smtp.office365.com does. The connector endpoint has no AUTH.
func (ss *session) AuthMechanisms() []string {
	if ss.sim.opt.Mode != ModeSubmission || ss.tls == nil {
		return nil
	}
	return []string{"LOGIN", "PLAIN", "XOAUTH2"}
}

// Auth starts one AUTH exchange. go-smtp writes a returned *smtp.SMTPError,
// here or from the sasl.Server, as the reply.
func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.sim.opt.Mode != ModeSubmission {
		return nil, ss.authFailed(replyUnknownMechanism())
	}
	if ss.tls == nil {
		return nil, ss.authFailed(replyMustStartTLS())
	}
	if r, ok := ss.sim.script.next(StageAuth); ok && !r.success() {
		ss.sim.countAuthFailure()
		return nil, ss.scripted(r)
	}
	switch strings.ToUpper(mech) {
	case "LOGIN":
		return &loginServer{authenticate: ss.authBasic}, nil
	case "PLAIN":
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && !strings.EqualFold(identity, user) {
				return ss.authFailed(replyAuthUnsuccessful())
			}
			return ss.authBasic(user, pass)
		}), nil
	case "XOAUTH2":
		return &xoauth2Server{authenticate: ss.authOAuth}, nil
	}
	return nil, ss.authFailed(replyUnknownMechanism())
}

// authBasic checks LOGIN and PLAIN credentials, in the order Exchange
// reports problems: SMTP AUTH off for the tenant, basic auth off, wrong
// password, SMTP AUTH off for the mailbox, too many connections.
func (ss *session) authBasic(user, pass string) error {
	sim := ss.sim
	if sim.smtpAuthDisabled("") {
		return ss.authFailed(replySMTPAuthDisabled("Tenant"))
	}
	if sim.basicAuthIsDisabled() {
		return ss.authFailed(replyBasicAuthDisabled())
	}
	want, ok := sim.opt.Mailboxes[strings.ToLower(user)]
	if !ok || want != pass {
		return ss.authFailed(replyAuthUnsuccessful())
	}
	return ss.login(user)
}

// authOAuth checks an XOAUTH2 bearer token: it must be one the token
// endpoint issued and not yet expired, for a mailbox of the tenant.
func (ss *session) authOAuth(user, token string) error {
	sim := ss.sim
	if sim.smtpAuthDisabled("") {
		return ss.authFailed(replySMTPAuthDisabled("Tenant"))
	}
	if _, ok := sim.opt.Mailboxes[strings.ToLower(user)]; !ok || !sim.tokens.valid(token, sim.opt.Now()) {
		return ss.authFailed(replyAuthUnsuccessful())
	}
	return ss.login(user)
}

// login completes a successful AUTH: it takes one of the mailbox's
// connection slots, which Logout gives back.
func (ss *session) login(user string) error {
	key := strings.ToLower(user)
	if ss.sim.smtpAuthDisabled(key) {
		return ss.authFailed(replySMTPAuthDisabled("Mailbox"))
	}
	if !ss.sim.limits.acquire(key) {
		return ss.authFailed(replyTooManyConnections())
	}
	ss.user, ss.slot = key, key
	ss.sim.countAuth()
	return nil
}

func (ss *session) authFailed(e *smtp.SMTPError) error {
	ss.sim.countAuthFailure()
	return ss.sim.refuse(e)
}

// loginServer is the server side of AUTH LOGIN (draft-murchison-sasl-login),
// which go-sasl no longer provides: "Username:" and "Password:" challenges,
// the first skipped when the client sends an initial response.
type loginServer struct {
	authenticate func(user, pass string) error
	user         []byte
	step         int
}

func (a *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch a.step {
	case 0:
		a.step++
		if response == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		a.step = 2
		a.user = response
		return []byte("Password:"), false, nil
	case 2:
		a.step++
		return nil, true, a.authenticate(string(a.user), string(response))
	}
	return nil, false, sasl.ErrUnexpectedClientResponse
}

// xoauth2Server is the server side of XOAUTH2 as Exchange Online uses it
// (https://learn.microsoft.com/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth):
// one response "user=<mailbox>\x01auth=Bearer <token>\x01\x01". Exchange
// answers a bad token with 535 5.7.3 at once, without the JSON challenge
// Google sends.
type xoauth2Server struct {
	authenticate func(user, token string) error
	asked        bool
}

func (a *xoauth2Server) Next(response []byte) (challenge []byte, done bool, err error) {
	if response == nil && !a.asked {
		a.asked = true
		return []byte{}, false, nil
	}
	user, token, err := parseXOAuth2(response)
	if err != nil {
		return nil, true, a.authenticate("", "")
	}
	return nil, true, a.authenticate(user, token)
}

func parseXOAuth2(b []byte) (user, token string, err error) {
	for _, field := range bytes.Split(b, []byte{1}) {
		k, v, _ := strings.Cut(string(field), "=")
		switch k {
		case "user":
			user = v
		case "auth":
			scheme, t, ok := strings.Cut(v, " ")
			if !ok || !strings.EqualFold(scheme, "Bearer") {
				return "", "", errors.New("xoauth2: auth is not a bearer token")
			}
			token = t
		}
	}
	if user == "" || token == "" {
		return "", "", errors.New("xoauth2: user or auth missing")
	}
	return user, token, nil
}
