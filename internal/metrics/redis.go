package metrics

import "github.com/prometheus/client_golang/prometheus"

// EvictionPolicyOK registers mailgate_redis_eviction_policy_ok on reg, set
// to ok: 1 when Redis's maxmemory-policy was read at startup and is
// noeviction, 0 when it evicts or could not be read. It is the metric to
// alert on when redis.allow_eviction accepted the risk.
func EvictionPolicyOK(reg prometheus.Registerer, ok bool) {
	v := 0.0
	if ok {
		v = 1
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "mailgate_redis_eviction_policy_ok",
		Help: "1 when Redis's maxmemory-policy was read at startup and is noeviction; 0 when Redis may evict keys (queued mail, idempotency keys, revocations) or the policy could not be read.",
	})
	g.Set(v)
	reg.MustRegister(g)
}
