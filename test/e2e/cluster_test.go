package e2e

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/openapi/contract"
	"github.com/mailgate/mailgate/test/exosim"
	"github.com/mailgate/mailgate/test/redisha"
)

// clusterEnv names the Redis Cluster (comma-separated node addresses) that
// newEnv uses instead of a fresh single node.
const clusterEnv = "MAILGATE_E2E_REDIS_CLUSTER"

// coreTests are the end-to-end suite's core: the four submit styles,
// delivery, retry, hold, and limits kept across two instances.
var coreTests = []string{
	"TestSubmitEachStyleIsDelivered",
	"TestTemporaryFailureIsRetried",
	"TestRouteHeldOnAuthDisabledThenResumes",
	"TestTwoInstancesNeverExceedThreeConnections",
	"TestTwoInstancesKeepThirtyAMinute",
}

// The core tests, unchanged, on a real Redis Cluster of three masters with
// one replica each, with every 202 waiting for a replica
// (min_replicas_acked: 1). They run in a child process of this test binary
// so that the cluster is started once and each test still builds its own
// environment through newEnv.
func TestCoreOnRedisCluster(t *testing.T) {
	if os.Getenv(clusterEnv) != "" {
		t.Skip("already on the cluster") // the child process; never in a plain run
	}
	t.Parallel()
	c := redisha.StartCluster(t)
	cmd := exec.Command(os.Args[0], "-test.run", "^("+strings.Join(coreTests, "|")+")$",
		"-test.count=1", "-test.v", "-test.timeout=3m")
	cmd.Env = append(os.Environ(), clusterEnv+"="+strings.Join(c.Seeds(), ","))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("core tests on the cluster: %v\n%s", err, out)
	}
	// Each core test must have run and passed; a filter that matched
	// nothing would pass silently.
	for _, name := range coreTests {
		if !regexp.MustCompile(`(?m)^--- PASS: ` + name + ` `).Match(out) {
			t.Fatalf("%s did not pass on the cluster:\n%s", name, out)
		}
	}
	t.Logf("on the cluster: %s", strings.Join(regexp.MustCompile(`(?m)^--- PASS: .*$`).FindAllString(string(out), -1), "; "))
}

// Two routes whose hash tags land on different masters both deliver: every
// script of a route runs on its own master, and nothing spans two slots.
func TestRoutesOnDifferentClusterMasters(t *testing.T) {
	t.Parallel()
	c := redisha.StartCluster(t)
	// "m365" and "bulk" hash to slots served by different masters of a
	// three-master cluster made by redis-cli (slots split in thirds).
	if a, b := c.MasterOf("{m365}"), c.MasterOf("{bulk}"); a == b {
		t.Fatalf("routes m365 and bulk share master %s; pick other route names", a.Addr)
	}
	sim := exosim.Start(t, simOptions())
	cfg := baseConfig(sim, nil)
	cfg.Redis = config.Redis{Cluster: config.RedisCluster{Addrs: c.Seeds()[:1]}, MinReplicasAcked: 1}
	bulk := cfg.Routes[0]
	bulk.Name = "bulk"
	cfg.Routes = append(cfg.Routes, bulk)
	cfg.Apps = append(cfg.Apps, config.App{ID: "newsletter", Route: "bulk", From: config.AppFrom{Default: "helpdesk@contoso.com"}})
	e := newEnvConfig(t, sim, cfg)
	e.start(gateway.RoleAll)
	a := e.submitJSON(e.token("billing"), map[string]any{"to": "ops@contoso.com", "subject": "on m365", "text": "x"}, nil)
	b := e.submitJSON(e.token("newsletter"), map[string]any{"to": "ops@contoso.com", "subject": "on bulk", "text": "x"}, nil)
	e.waitStatus(e.token("billing"), a, "sent", 30*time.Second)
	e.waitStatus(e.token("newsletter"), b, "sent", 30*time.Second)

	// The keys of each route really are on its master.
	ctx := context.Background()
	for route, id := range map[string]string{"m365": a, "bulk": b} {
		m := c.MasterOf("{" + route + "}")
		keys, err := m.Client().Keys(ctx, "*{"+route+"}*"+id+"*").Result()
		if err != nil || len(keys) == 0 {
			t.Fatalf("no key of message %s on %s, the master of route %s: %v", id, m.Addr, route, err)
		}
	}
}

// newEnvConfig is newEnv with a configuration of the test's own (its Redis
// is already running).
func newEnvConfig(t *testing.T, sim *exosim.Sim, cfg *config.Config) *env {
	t.Helper()
	cfg.WithDefaults()
	if problems := cfg.Validate(); len(problems) > 0 {
		t.Fatalf("test configuration is invalid:\n%v", config.Problems(problems))
	}
	tm, err := gateway.Tokens(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, sim: sim, cfg: cfg, tokens: tm, contract: contract.New(t)}
}
