package metrics_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mailgate/mailgate/internal/metrics"
)

func TestQueueCollector(t *testing.T) {
	t.Parallel()
	read := func(_ context.Context, route string) (metrics.Depth, error) {
		switch route {
		case "m365":
			return metrics.Depth{Waiting: 3, Sending: 1, Held: true, Lag: 90 * time.Second}, nil
		case "relay":
			// A clock a little behind Redis's scores: never a negative lag.
			return metrics.Depth{Waiting: 1, Lag: -time.Second}, nil
		}
		return metrics.Depth{}, errors.New("connection refused")
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.NewQueueCollector([]string{"m365", "relay"}, read))
	want := `
# HELP mailgate_queue_lag_seconds Seconds the earliest-due waiting message of a route has been due without being taken (0 when none is due): how far delivery lags behind.
# TYPE mailgate_queue_lag_seconds gauge
mailgate_queue_lag_seconds{route="m365"} 90
mailgate_queue_lag_seconds{route="relay"} 0
# HELP mailgate_queue_up 1 when the queue in Redis could be read at this scrape, else 0.
# TYPE mailgate_queue_up gauge
mailgate_queue_up 1
# HELP mailgate_route_held 1 while a route is held after a configuration error or a block, else 0.
# TYPE mailgate_route_held gauge
mailgate_route_held{route="m365"} 1
mailgate_route_held{route="relay"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"mailgate_queue_lag_seconds", "mailgate_queue_up", "mailgate_route_held"); err != nil {
		t.Error(err)
	}

	// Redis unreachable: no route's series, and up says why.
	down := prometheus.NewPedanticRegistry()
	down.MustRegister(metrics.NewQueueCollector([]string{"other"}, read))
	want = `
# HELP mailgate_queue_up 1 when the queue in Redis could be read at this scrape, else 0.
# TYPE mailgate_queue_up gauge
mailgate_queue_up 0
`
	if err := testutil.GatherAndCompare(down, strings.NewReader(want), "mailgate_queue_up", "mailgate_queue_lag_seconds"); err != nil {
		t.Error(err)
	}
}

func TestOAuthTokenRequests(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	o := metrics.NewOAuth(reg, []string{"m365"})
	o.TokenRequest("m365", nil)
	o.TokenRequest("m365", errors.New("AADSTS7000215"))
	o.TokenRequest("m365", errors.New("AADSTS7000215"))
	want := `
# HELP mailgate_oauth_token_requests_total Access token requests to Entra ID, by route and result (success, failure). Failures while a cached token is still valid do not stop delivery yet.
# TYPE mailgate_oauth_token_requests_total counter
mailgate_oauth_token_requests_total{result="failure",route="m365"} 2
mailgate_oauth_token_requests_total{result="success",route="m365"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "mailgate_oauth_token_requests_total"); err != nil {
		t.Error(err)
	}
	var none *metrics.OAuth
	none.TokenRequest("m365", nil) // the api role has none; must not panic
}
