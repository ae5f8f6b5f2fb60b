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
			return metrics.Depth{Waiting: 3, Sending: 1, Held: true, Lag: 90 * time.Second,
				Bytes: 4000, MaxMessages: 4, MaxBytes: 1 << 20, Full: true}, nil
		case "relay":
			// A clock a little behind Redis's scores: never a negative lag.
			return metrics.Depth{Waiting: 1, Lag: -time.Second, Bytes: 10, MaxMessages: 100, MaxBytes: 10}, nil
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
# HELP mailgate_queue_bytes Bytes of a route's waiting and sending messages, which its queue.max_bytes bounds.
# TYPE mailgate_queue_bytes gauge
mailgate_queue_bytes{route="m365"} 4000
mailgate_queue_bytes{route="relay"} 10
# HELP mailgate_queue_full 1 while a route's queue is at its limit and submissions for it get 503 queue_full, else 0.
# TYPE mailgate_queue_full gauge
mailgate_queue_full{route="m365"} 1
mailgate_queue_full{route="relay"} 0
# HELP mailgate_queue_limit A route's queue limit: how many messages (unit messages, queue.max_messages) or bytes (unit bytes, queue.max_bytes) may be waiting and sending at once.
# TYPE mailgate_queue_limit gauge
mailgate_queue_limit{route="m365",unit="bytes"} 1.048576e+06
mailgate_queue_limit{route="m365",unit="messages"} 4
mailgate_queue_limit{route="relay",unit="bytes"} 10
mailgate_queue_limit{route="relay",unit="messages"} 100
# HELP mailgate_queue_up 1 when the queue in Redis could be read at this scrape, else 0.
# TYPE mailgate_queue_up gauge
mailgate_queue_up 1
# HELP mailgate_route_held 1 while a route is held after a configuration error or a block, else 0.
# TYPE mailgate_route_held gauge
mailgate_route_held{route="m365"} 1
mailgate_route_held{route="relay"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"mailgate_queue_lag_seconds", "mailgate_queue_up", "mailgate_route_held",
		"mailgate_queue_bytes", "mailgate_queue_full", "mailgate_queue_limit"); err != nil {
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
