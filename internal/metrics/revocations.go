package metrics

import "github.com/prometheus/client_golang/prometheus"

// RevocationsInMemory registers mailgate_token_revocations_in_memory on reg:
// 1 while requests are checked against the revocation list held in memory
// (no Redis round trip), 0 while each request asks Redis (starting, or the
// revocation channel lost: package token says why that is safe).
func RevocationsInMemory(reg prometheus.Registerer, inMemory func() bool) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mailgate_token_revocations_in_memory",
		Help: "1 while token revocations are checked against the list held in memory and kept current over Redis Pub/Sub; 0 while each request asks Redis.",
	}, func() float64 {
		if inMemory() {
			return 1
		}
		return 0
	}))
}
