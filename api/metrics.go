package api

import "github.com/prometheus/client_golang/prometheus"

// apiMetrics are registered on the registry passed in, never the global one.
type apiMetrics struct {
	submissions *prometheus.CounterVec
	bytes       *prometheus.CounterVec
}

func newAPIMetrics(reg prometheus.Registerer) *apiMetrics {
	m := &apiMetrics{
		submissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_submissions_total",
			Help: "Submissions that reached the queue step, by app and result (accepted, idempotent_replay, queue_unavailable).",
		}, []string{"app", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_submitted_bytes_total",
			Help: "Bytes of accepted messages, by app.",
		}, []string{"app"}),
	}
	reg.MustRegister(m.submissions, m.bytes)
	return m
}
