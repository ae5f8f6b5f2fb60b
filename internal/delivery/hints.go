package delivery

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/smtpreply"
)

// ErrNoStartTLS means the server did not offer STARTTLS on a route whose
// mode requires it: mailgate never falls back to clear text.
var ErrNoStartTLS = errors.New("the server does not offer STARTTLS, and the route requires TLS")

// Diagnosis is what a failed step means for the administrator.
type Diagnosis struct {
	// Hint says what to change; "" when nothing better than the error
	// itself can be said.
	Hint string
	// Config is true when the failure lies in the route's configuration or
	// the server's certificate and no retry can cure it (the worker holds the
	// route instead of retrying every message).
	Config bool
}

// Diagnose explains a failed step on route r, for the worker's records and
// the route check alike: from the server's reply when there is one, else
// from the kind of error (errors.As, never the error's text).
func Diagnose(r *config.Route, se *StepError) Diagnosis {
	if se.Reply != nil {
		return Diagnosis{Hint: smtpreply.Classify(*se.Reply).Hint}
	}
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var dnsErr *net.DNSError
	var ne net.Error
	switch {
	case errors.As(se.Err, &unknown):
		return Diagnosis{Config: true,
			Hint: "the server's certificate is not signed by a trusted CA: add the CA to tls.ca_file"}
	case errors.As(se.Err, &host):
		return Diagnosis{Config: true,
			Hint: "the server's certificate does not name " + r.Host + ": fix host, or set tls.server_name to the name it has"}
	case errors.As(se.Err, &invalid):
		return Diagnosis{Config: true,
			Hint: "the server's certificate is not valid (expired or not yet valid)"}
	case errors.Is(se.Err, ErrNoStartTLS):
		return Diagnosis{Config: true,
			Hint: "the route requires TLS and the server does not offer STARTTLS; Exchange Online always does: check host and port"}
	case errors.As(se.Err, &dnsErr):
		hint := "the host name does not resolve: check host"
		if r.Type == config.RouteConnector && len(r.AcceptedDomains) > 0 {
			hint += " (for a connector: " + config.MXHost(r.AcceptedDomains[0]) + ")"
		}
		return Diagnosis{Hint: hint}
	case errors.Is(se.Err, syscall.ECONNREFUSED):
		return Diagnosis{Hint: fmt.Sprintf("nothing listens on %s:%d: check host and port", r.Host, r.Port)}
	case errors.As(se.Err, &ne) && ne.Timeout():
		return Diagnosis{Hint: fmt.Sprintf("no answer from %s:%d: outbound port %d may be blocked by a firewall or "+
			"the cloud provider (many block port 25)", r.Host, r.Port, r.Port)}
	}
	return Diagnosis{}
}
