package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/test/exosim"
)

// connectorEnv is a tenant reached through a certificate connector on port
// 25: STARTTLS, a client certificate, no AUTH.
func connectorEnv(t *testing.T, presentCert func(sim *exosim.Sim) (string, string)) *env {
	t.Helper()
	opts := exosim.Options{Mode: exosim.ModeConnector, AcceptedDomains: []string{"contoso.com", "alerts.contoso.com"},
		RequireClientCert: true, ConnectorCertName: "mailgate.contoso.com"}
	var simRef *exosim.Sim
	e := newEnvSimHook(t, opts, func(sim *exosim.Sim) { simRef = sim }, func(c *config.Config) {
		cert, key := presentCert(simRef)
		c.Delivery.ProbeInterval = 200 * time.Millisecond
		c.Routes = []config.Route{{
			Name: "relay", Type: config.RouteConnector, Host: simRef.Host(), Port: simRef.Port(),
			TLS:             config.RouteTLS{Mode: config.TLSStartTLS, CAFile: simRef.CAFile(), ClientCertFile: cert, ClientKeyFile: key},
			AcceptedDomains: []string{"contoso.com", "alerts.contoso.com"},
		}}
		c.Apps = []config.App{{ID: "monitoring", Route: "relay",
			From: config.AppFrom{Default: "Alerts <alerts@alerts.contoso.com>", Allowed: []string{"*@alerts.contoso.com"}}}}
	})
	return e
}

func TestConnectorWithClientCertificate(t *testing.T) {
	t.Parallel()
	e := connectorEnv(t, func(sim *exosim.Sim) (string, string) { return sim.ClientCert(t, "mailgate.contoso.com") })
	e.start(gateway.RoleAll)
	tok := e.token("monitoring")
	id := e.submitJSON(tok, map[string]any{"to": "ops@contoso.com", "subject": "via connector", "text": "x"}, nil)
	e.waitStatus(tok, id, "sent", 10*time.Second)
	msgs := e.sim.Messages()
	if len(msgs) != 1 || msgs[0].ClientCert != "mailgate.contoso.com" || msgs[0].AuthUser != "" {
		t.Fatalf("delivered %+v", msgs)
	}
}

// Without the right certificate Exchange answers 550 5.7.64: a
// configuration error of the route, so it is held and the message waits.
func TestConnectorWithWrongCertificateIsHeld(t *testing.T) {
	t.Parallel()
	e := connectorEnv(t, func(sim *exosim.Sim) (string, string) { return sim.UntrustedClientCert(t, "mailgate.contoso.com") })
	e.start(gateway.RoleAll)
	tok := e.token("monitoring")
	id := e.submitJSON(tok, map[string]any{"to": "ops@contoso.com", "subject": "refused", "text": "x"}, nil)
	if routes := e.waitRouteHeld(tok, 10*time.Second); !strings.Contains(routes, "5.7.64") {
		t.Fatalf("held without the reason: %s", routes)
	}
	st := e.status(tok, id)
	if st["status"] == "failed" || st["attempts"].(float64) != 0 || len(e.sim.Messages()) != 0 {
		t.Fatalf("the message was burned: %v", st)
	}
}
