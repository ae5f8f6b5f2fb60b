package deploy

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/mailgate/mailgate/internal/config"
)

// TestComposeFile loads compose.yaml with compose-go, the loader of docker
// compose itself: the Compose Specification's schema refuses an unknown or
// misspelt key. Then it checks what the file promises: Redis keeps what it
// acknowledges, mailgate's health check runs mailgate itself (the image has
// no shell), secrets are files, and compose.config.yaml loads.
func TestComposeFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// The secrets are the operator's, not in the repository: made-up ones,
	// so the loader finds every file it is told of.
	for _, f := range []string{"compose.yaml", "compose.config.yaml"} {
		if err := os.WriteFile(filepath.Join(dir, f), mustRead(t, f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"signing-key", "m365-client-secret"} {
		if err := os.WriteFile(filepath.Join(dir, "secrets", f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "compose.yaml")}},
		Environment: types.Mapping{},
	})
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}

	redis, err := p.GetService("redis")
	if err != nil {
		t.Fatal(err)
	}
	cmd := strings.Join(redis.Command, " ")
	for _, want := range []string{"--appendonly yes", "--appendfsync always", "--maxmemory-policy noeviction"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("redis command %q lacks %q", cmd, want)
		}
	}
	if redis.HealthCheck == nil || len(redis.HealthCheck.Test) == 0 {
		t.Error("redis has no health check")
	}
	if !slices.ContainsFunc(redis.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == "/data" && v.Type == types.VolumeTypeVolume }) {
		t.Error("redis keeps /data on no named volume: its AOF would go with the container")
	}
	if len(redis.Ports) > 0 {
		t.Errorf("redis publishes ports %v: only mailgate should reach it", redis.Ports)
	}

	mg, err := p.GetService("mailgate")
	if err != nil {
		t.Fatal(err)
	}
	if hc := mg.HealthCheck; hc == nil || !slices.Equal(hc.Test[:3], []string{"CMD", "/mailgate", "healthcheck"}) ||
		!strings.HasSuffix(hc.Test[len(hc.Test)-1], "/readyz") {
		t.Errorf("mailgate's health check %v, want CMD /mailgate healthcheck --url .../readyz", mg.HealthCheck)
	}
	// The binary is where the health check runs it.
	if df := string(mustRead(t, "../Dockerfile")); !strings.Contains(df, `ENTRYPOINT ["/mailgate"]`) {
		t.Error("the Dockerfile's entrypoint is no longer /mailgate: update the health check")
	}
	if dep, ok := mg.DependsOn["redis"]; !ok || dep.Condition != types.ServiceConditionHealthy {
		t.Error("mailgate does not wait for a healthy redis")
	}
	if !mg.ReadOnly || !slices.Equal(mg.CapDrop, []string{"ALL"}) {
		t.Errorf("mailgate: want read_only and cap_drop [ALL], have %v %v", mg.ReadOnly, mg.CapDrop)
	}
	if len(mg.Secrets) == 0 {
		t.Error("mailgate gets no secret files")
	}
	for _, s := range mg.Secrets {
		if _, ok := p.Secrets[s.Source]; !ok {
			t.Errorf("mailgate uses secret %s, which is not defined", s.Source)
		}
	}
	if len(mg.Configs) != 1 || mg.Configs[0].Target != "/etc/mailgate/config.yaml" {
		t.Errorf("mailgate's configuration is not mounted at /etc/mailgate/config.yaml: %v", mg.Configs)
	}
	if !slices.Contains(mg.Command, "/etc/mailgate/config.yaml") {
		t.Errorf("mailgate's command %v does not read /etc/mailgate/config.yaml", mg.Command)
	}

	// The configuration reads exactly the secrets compose mounts.
	c := loadComposeConfig(t)
	if c.Redis.URL != "redis://redis:6379/0" {
		t.Errorf("compose.config.yaml: redis.url %q, want the redis service", c.Redis.URL)
	}
}

// loadComposeConfig loads compose.config.yaml with its /run/secrets/ files
// replaced by made-up ones.
func loadComposeConfig(t *testing.T) *config.Config {
	t.Helper()
	return loadWithSecrets(t, "compose.config.yaml", fakeSecrets(t), "/run/secrets/")
}
