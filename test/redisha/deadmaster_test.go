package redisha_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/test/redisha"
	"github.com/mailgate/mailgate/test/testwait"
)

// A Cluster master dies and stays dead. An instance whose client sends
// nothing but enqueues (an API-only instance: enqueue scripts are sent
// once, so go-redis's own retries never notice the dead node) must take
// submissions again within seconds of its replica's promotion, not at
// the cluster client's next periodic reload of the layout (a minute by
// default); and every message accepted after the kill is on the new
// master. (One accepted just before the kill may not have reached the
// replica: replication is asynchronous unless redis.min_replicas_acked
// asks a replica to confirm, which a master without replicas cannot; the
// e2e failover tests cover that, the old master coming back.)
//
// One route's master is killed for single enqueues (grouped, as the API
// sends them), then another route's for EnqueueManyRetrying (a batch);
// the cluster keeps a majority of masters for the second promotion.
func TestClusterEnqueueAfterMasterStaysDead(t *testing.T) {
	t.Parallel()
	c := redisha.StartCluster(t)
	// The retries of gateway.NewRedisClient, but go-redis's default
	// periodic reload of the layout (60 s): only the enqueues' own request
	// for a reload passes within recover. (The gateway's shorter interval
	// is a backstop, checked in internal/gateway.)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Seeds(), DialerRetries: 1, MaxRetries: 1})
	t.Cleanup(func() { _ = rdb.Close() })
	q := queue.New(rdb, queue.Options{})
	ctx := context.Background()
	// The routes' slots must be on two different masters.
	one, many := "m365", "news"
	if c.MasterOf("{"+one+"}") == c.MasterOf("{"+many+"}") {
		t.Fatalf("routes %s and %s share a master; pick other names", one, many)
	}

	// Well under the 60 s of go-redis's periodic reload, well over what a
	// reload asked for by the first failed enqueue needs (well under 1 s).
	const recover = 15 * time.Second
	const within = time.Second // each submission's retry window, as the API's
	var accepted [][2]string   // route, id; after the kill
	check := func(route string) {
		t.Helper()
		for _, a := range accepted {
			if a[0] != route {
				continue
			}
			id := a[1]
			if ok, err := q.Exists(ctx, route, id); err != nil || !ok {
				t.Errorf("accepted message %s of %s not stored on the new master: %v %v", id, route, ok, err)
			}
		}
	}

	// Single enqueues. The first one, before the kill, has the client
	// learn the route's master.
	if _, _, err := q.EnqueueRetrying(ctx, msg(one, ""), within); err != nil {
		t.Fatal(err)
	}
	c.WaitPromoted("{"+one+"}", c.KillMasterOf("{"+one+"}"))
	promoted := time.Now()
	testwait.Until(t, recover, func() bool {
		id, _, err := q.EnqueueRetrying(ctx, msg(one, ""), within)
		if err != nil {
			return false
		}
		accepted = append(accepted, [2]string{one, id})
		return true
	}, "an enqueue accepted after the promotion, the old master staying dead")
	t.Logf("first enqueue accepted %s after the promotion was seen", time.Since(promoted).Round(time.Millisecond))
	check(one)

	// A batch.
	batch := func() bool {
		ok := true
		for _, r := range q.EnqueueManyRetrying(ctx, []queue.Message{msg(many, ""), msg(many, "")}, within) {
			if r.Err != nil {
				ok = false
				continue
			}
			accepted = append(accepted, [2]string{many, r.ID})
		}
		return ok
	}
	if !batch() {
		t.Fatal("batch refused before the kill")
	}
	accepted = accepted[:0] // checked above, or sent before the kill
	c.WaitPromoted("{"+many+"}", c.KillMasterOf("{"+many+"}"))
	promoted = time.Now()
	testwait.Until(t, recover, batch, "a batch accepted after the promotion, the old master staying dead")
	t.Logf("first batch accepted %s after the promotion was seen", time.Since(promoted).Round(time.Millisecond))
	check(many)
}
