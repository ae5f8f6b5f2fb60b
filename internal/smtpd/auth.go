package smtpd

import (
	"context"
	"errors"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailgate/mailgate/internal/smtppass"
	"github.com/mailgate/mailgate/internal/token"
)

// maxAuthFailures is how many failed AUTH a connection may make before it
// is closed, so guessing passwords costs a connection each few tries.
const maxAuthFailures = 3

// Replies of authentication. 535 5.7.8 and 454 4.7.0 are RFC 4954's, 538
// 5.7.11 is its "encryption required for requested authentication
// mechanism".
var (
	replyBadCredentials = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
	replyAuthTemp       = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure, try again later"}
	replyTLSFirst       = &smtp.SMTPError{Code: 538, EnhancedCode: smtp.EnhancedCode{5, 7, 11}, Message: "Must issue a STARTTLS command first: AUTH without TLS is not allowed from your address"}
)

// identity is who authenticated and how to check, before each message,
// that the credential still holds (a token or password revoked while the
// connection is open stops the next message).
type identity struct {
	app    string
	method string // token or password
	check  func(ctx context.Context) (reason string, err error)
}

// authenticate verifies a password given over AUTH: an app token (verified
// by token.Manager exactly as the HTTP API does, revocations included) or a
// short SMTP password. The user name is not used. reason names the failure
// for the log and the metrics; err is non-nil only when Redis could not be
// asked.
func (s *Server) authenticate(ctx context.Context, password string) (id *identity, reason string, err error) {
	if smtppass.IsPassword(password) {
		check := func(ctx context.Context) (string, string, error) {
			app, pid, err := s.opts.Passwords.Verify(ctx, password)
			switch {
			case errors.Is(err, smtppass.ErrUnknown):
				return "", "password_unknown_or_revoked (" + pid + ")", nil
			case errors.Is(err, smtppass.ErrMismatch):
				return "", "password_mismatch (" + pid + ")", nil
			case err != nil:
				return "", "", err
			}
			if r := s.appRefusal(app); r != "" {
				return "", r, nil
			}
			return app, "", nil
		}
		app, reason, err := check(ctx)
		if app == "" {
			return nil, reason, err
		}
		return &identity{app: app, method: "password", check: func(ctx context.Context) (string, error) {
			_, r, err := check(ctx)
			return r, err
		}}, "", nil
	}
	check := func(ctx context.Context) (string, string, error) {
		c, err := s.opts.Tokens.Verify(ctx, password)
		if err != nil {
			if token.IsAuthError(err) {
				return "", tokenReason(err), nil
			}
			return "", "", err
		}
		if c.Scope != token.ScopeApp {
			return "", "admin_token (admin tokens manage, they never send)", nil
		}
		if r := s.appRefusal(c.Subject); r != "" {
			return "", r, nil
		}
		return c.Subject, "", nil
	}
	app, reason, err := check(ctx)
	if app == "" {
		return nil, reason, err
	}
	return &identity{app: app, method: "token", check: func(ctx context.Context) (string, error) {
		_, r, err := check(ctx)
		return r, err
	}}, "", nil
}

func (s *Server) appRefusal(app string) string {
	a, ok := s.opts.Door.App(app)
	switch {
	case !ok:
		return "app_unknown (" + app + " is not configured)"
	case a.Disabled:
		return "app_disabled (" + app + ")"
	}
	return ""
}

func tokenReason(err error) string {
	switch {
	case errors.Is(err, token.ErrRevoked):
		return "token_revoked"
	case errors.Is(err, token.ErrExpired):
		return "token_expired"
	case errors.Is(err, token.ErrNotYet):
		return "token_not_yet_valid"
	case errors.Is(err, token.ErrSignature), errors.Is(err, token.ErrIssuer):
		return "token_not_ours"
	}
	return "bad_credentials"
}

// metricReason is the label of a failure reason: its first word.
func metricReason(reason string) string {
	r, _, _ := strings.Cut(reason, " ")
	return r
}

// loginServer is the server side of the LOGIN mechanism (an old Microsoft
// draft, draft-murchison-sasl-login, that devices and Outlook still use);
// go-sasl no longer ships one. The user name may come as the initial
// response.
type loginServer struct {
	step     int
	user     string
	callback func(user, pass string) error
}

func (a *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch a.step {
	case 0:
		a.step = 1
		if response != nil {
			a.user = string(response)
			a.step = 2
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		a.user = string(response)
		a.step = 2
		return []byte("Password:"), false, nil
	case 2:
		a.step = 3
		return nil, true, a.callback(a.user, string(response))
	}
	return nil, false, errors.New("unexpected response")
}

var _ sasl.Server = (*loginServer)(nil)
