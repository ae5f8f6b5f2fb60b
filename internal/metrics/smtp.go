package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// SMTP is what the SMTP door records: the same questions as for the HTTP
// door (how much comes in, how much is refused and why), plus the
// connection and authentication counts an administrator retiring a relay
// watches.
type SMTP struct {
	connections *prometheus.CounterVec
	open        prometheus.Gauge
	authFails   *prometheus.CounterVec
	messages    *prometheus.CounterVec
	bytes       *prometheus.CounterVec

	protocolRefusals *prometheus.CounterVec
}

// NewSMTP registers the SMTP door's metrics on reg.
func NewSMTP(reg prometheus.Registerer) *SMTP {
	m := &SMTP{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_smtp_connections_total",
			Help: "SMTP connections, by result (served; refused_total or refused_per_ip: over max_connections or max_connections_per_ip, answered 421).",
		}, []string{"result"}),
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailgate_smtp_connections_open",
			Help: "SMTP connections open now.",
		}),
		authFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_smtp_auth_failures_total",
			Help: "Refused SMTP AUTH attempts, by reason (bad_credentials, revoked, expired, app_disabled, tls_required, unavailable, ...).",
		}, []string{"reason"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_smtp_messages_total",
			Help: "SMTP transactions that ended, by app (\"\" when unknown), and reply code (250 accepted and queued; 5xx refused; 4xx temporary).",
		}, []string{"app", "code"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_smtp_received_bytes_total",
			Help: "Bytes of messages accepted over SMTP, by app.",
		}, []string{"app"}),
		protocolRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_smtp_protocol_refusals_total",
			Help: "SMTP replies of 4xx or 5xx that go-smtp sends itself, before the door decides anything, by app (\"\" when unknown), reason (message_too_big: SIZE= or a BDAT chunk over smtp.max_message_bytes; too_many_recipients: over smtp.max_recipients; syntax; bad_sequence; line_too_long; too_many_errors; timeout; other) and code. message_too_big and too_many_recipients count in mailgate_smtp_messages_total too.",
		}, []string{"app", "reason", "code"}),
	}
	reg.MustRegister(m.connections, m.open, m.authFails, m.messages, m.bytes, m.protocolRefusals)
	return m
}

// Connection records a connection's admission; served ones count as open
// until Closed.
func (m *SMTP) Connection(result string) {
	if m == nil {
		return
	}
	m.connections.WithLabelValues(result).Inc()
	if result == "served" {
		m.open.Inc()
	}
}

// Closed records the end of a served connection.
func (m *SMTP) Closed() {
	if m != nil {
		m.open.Dec()
	}
}

// AuthFailure records one refused AUTH.
func (m *SMTP) AuthFailure(reason string) {
	if m != nil {
		m.authFails.WithLabelValues(reason).Inc()
	}
}

// Message records the end of one transaction with its reply code, and the
// size of an accepted message.
func (m *SMTP) Message(app string, code int, size int) {
	if m == nil {
		return
	}
	m.messages.WithLabelValues(app, strconv.Itoa(code)).Inc()
	if code == 250 {
		m.bytes.WithLabelValues(app).Add(float64(size))
	}
}

// ProtocolRefusal records a refusal that the SMTP library answered itself,
// before the door's session saw the command.
func (m *SMTP) ProtocolRefusal(app, reason string, code int) {
	if m != nil {
		m.protocolRefusals.WithLabelValues(app, reason, strconv.Itoa(code)).Inc()
	}
}
