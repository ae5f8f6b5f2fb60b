package deploy

import (
	"context"
	"net"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/mailgate/mailgate/internal/config"
)

// The ports an Exchange server offers SMTP clients, which the kit publishes
// the door on: submission with STARTTLS (RFC 6409) and implicit TLS
// (RFC 8314).
const (
	submissionPort = 587
	smtpsPort      = 465
)

// TestComposeSMTP loads compose.yaml with compose.smtp.yaml, as
// `docker compose -f compose.yaml -f compose.smtp.yaml` does, and checks
// the SMTP door: 587 and 465 published to exactly the ports
// compose.smtp.config.yaml listens on, the certificate mounted where the
// configuration reads it, the health check unchanged, and a configuration
// that loads and differs from compose.config.yaml only in its SMTP keys.
func TestComposeSMTP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, f := range []string{"compose.yaml", "compose.smtp.yaml", "compose.config.yaml", "compose.smtp.config.yaml"} {
		if err := os.WriteFile(filepath.Join(dir, f), mustRead(t, f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"signing-key", "m365-client-secret", "smtp.crt", "smtp.key"} {
		if err := os.WriteFile(filepath.Join(dir, "secrets", f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	load := func(files ...string) *types.Project {
		t.Helper()
		var cf []types.ConfigFile
		for _, f := range files {
			cf = append(cf, types.ConfigFile{Filename: filepath.Join(dir, f)})
		}
		p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
			WorkingDir: dir, ConfigFiles: cf, Environment: types.Mapping{},
		})
		if err != nil {
			t.Fatalf("%v: %v", files, err)
		}
		return p
	}
	plain, err := load("compose.yaml").GetService("mailgate")
	if err != nil {
		t.Fatal(err)
	}
	p := load("compose.yaml", "compose.smtp.yaml")
	mg, err := p.GetService("mailgate")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(mg.HealthCheck, plain.HealthCheck) {
		t.Errorf("compose.smtp.yaml changes the health check: %v, was %v", mg.HealthCheck, plain.HealthCheck)
	}
	if len(plain.Ports) != 1 || plain.Ports[0].Target != 8080 {
		t.Errorf("compose.yaml alone publishes %v, want only the API's 8080", plain.Ports)
	}

	cfg := p.Configs["mailgate-config"]
	if filepath.Base(cfg.File) != "compose.smtp.config.yaml" {
		t.Errorf("with compose.smtp.yaml, mailgate's configuration is %s, want compose.smtp.config.yaml", cfg.File)
	}
	secrets := fakeSecrets(t)
	c := loadWithSecrets(t, "compose.smtp.config.yaml", secrets, "/run/secrets/")
	sameApartFromSMTP(t, "compose.smtp.config.yaml", c, loadWithSecrets(t, "compose.config.yaml", secrets, "/run/secrets/"))

	// Published: 587 to smtp.listen, 465 to smtp.listen_tls, and nothing
	// else but the API.
	want := smtpPorts(t, "compose.smtp.config.yaml", c)
	got := map[int]int{}
	for _, port := range mg.Ports {
		if port.Target == 8080 {
			continue
		}
		published, err := strconv.Atoi(port.Published)
		if err != nil {
			t.Errorf("port %v: published %q is not one port", port, port.Published)
			continue
		}
		got[published] = int(port.Target)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("compose.smtp.yaml publishes %v (published: container), want %v from smtp.listen and smtp.listen_tls", got, want)
	}

	// The certificate and key are compose secrets, mounted where
	// smtp.tls reads them.
	mounted := map[string]bool{}
	for _, s := range mg.Secrets {
		if _, ok := p.Secrets[s.Source]; !ok {
			t.Errorf("mailgate uses secret %s, which is not defined", s.Source)
		}
		target := s.Target
		if target == "" {
			target = s.Source
		}
		if !path.IsAbs(target) {
			target = "/run/secrets/" + target
		}
		mounted[target] = true
	}
	tlsConf := rawSMTPTLS(t, "compose.smtp.config.yaml")
	for key, file := range map[string]string{"smtp.tls.cert_file": tlsConf.CertFile, "smtp.tls.key_file": tlsConf.KeyFile} {
		if !mounted[file] {
			t.Errorf("compose.smtp.config.yaml: %s %s is not a secret compose.smtp.yaml mounts (%v)", key, file, keys(mounted))
		}
	}
}

// TestKubernetesSMTP decodes the SMTP component and the overlay that uses
// it strictly, and checks the door: it is added to the pods of role api
// (the role that opens it), the Service keeps the client's address and
// maps 587 and 465 to exactly the ports the configuration listens on, the
// TLS Secret is mounted where smtp.tls reads it, the probes are untouched,
// and the configuration differs from the base's only in its SMTP keys.
func TestKubernetesSMTP(t *testing.T) {
	t.Parallel()
	base := decodeKustomization(t, "kubernetes/base")
	comp := decodeKustomization(t, "kubernetes/components/smtp")
	decodeKustomization(t, "kubernetes/overlays/smtp")
	if comp.config == nil {
		t.Fatal("components/smtp generates no configuration")
	}
	secrets := fakeSecrets(t)
	sameApartFromSMTP(t, "components/smtp/config.yaml",
		loadConfig(t, "kubernetes/components/smtp/config.yaml", secrets),
		loadConfig(t, "kubernetes/base/config.yaml", secrets))
	if base.config == nil || base.config.SMTP.Listen != "" {
		t.Error("the base's configuration opens the SMTP door: it must stay HTTP-only, without a certificate")
	}

	// The patch adds to the API Deployment, whose role opens the door.
	if len(comp.patches.deployments) != 1 {
		t.Fatalf("components/smtp patches %d Deployments, want the API's", len(comp.patches.deployments))
	}
	patch := comp.patches.deployments[0]
	var api *appsv1.Deployment
	for _, d := range base.deployments {
		if d.Name == patch.Name {
			api = d
		}
	}
	if api == nil {
		t.Fatalf("components/smtp patches Deployment %s, which the base does not have", patch.Name)
	}
	if args := api.Spec.Template.Spec.Containers[0].Args; !slices.Equal(args[len(args)-2:], []string{"--role", "api"}) {
		t.Errorf("components/smtp patches %s, whose args %v are not --role api: only roles api and all open the door", api.Name, args)
	}
	pc := patch.Spec.Template.Spec.Containers
	if len(pc) != 1 || pc[0].Name != api.Spec.Template.Spec.Containers[0].Name {
		t.Fatalf("components/smtp's patch names containers %v, want the API's one", pc)
	}
	if pc[0].ReadinessProbe != nil || pc[0].LivenessProbe != nil {
		t.Error("components/smtp changes the probes: /readyz already covers the door")
	}
	containerPorts := map[string]int32{}
	for _, p := range pc[0].Ports {
		containerPorts[p.Name] = p.ContainerPort
	}

	// The Service: the client's address kept, and 587 and 465 to the
	// ports the configuration listens on.
	if len(comp.services) != 1 {
		t.Fatalf("components/smtp has %d Services, want one", len(comp.services))
	}
	svc := comp.services[0]
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer && svc.Spec.Type != corev1.ServiceTypeNodePort {
		t.Errorf("Service %s: type %q, want LoadBalancer or NodePort to reach devices outside the cluster", svc.Name, svc.Spec.Type)
	}
	if svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		t.Errorf("Service %s: externalTrafficPolicy %q, want Local: apps[].smtp.networks need the client's address", svc.Name, svc.Spec.ExternalTrafficPolicy)
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(api.Spec.Template.Labels)) {
		t.Errorf("Service %s does not select the API pods", svc.Name)
	}
	for _, d := range base.deployments {
		if d != api && labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("Service %s also selects the pods of %s, which have no SMTP door", svc.Name, d.Name)
		}
	}
	if svc.Labels["app.kubernetes.io/name"] == "mailgate" {
		t.Errorf("Service %s has the label the ServiceMonitor selects, and no port http", svc.Name)
	}
	got := map[int]int{}
	for _, p := range svc.Spec.Ports {
		cp, ok := containerPorts[p.TargetPort.StrVal]
		if !ok {
			t.Errorf("Service %s: port %s targets %q, which the patch gives the container no port of", svc.Name, p.Name, p.TargetPort.String())
			continue
		}
		got[int(p.Port)] = int(cp)
	}
	if want := smtpPorts(t, "components/smtp/config.yaml", comp.config); !reflect.DeepEqual(got, want) {
		t.Errorf("Service %s maps %v (port: container port), want %v from smtp.listen and smtp.listen_tls", svc.Name, got, want)
	}

	// The kubernetes.io/tls Secret, mounted where smtp.tls reads it.
	tlsVolumes := map[string]bool{}
	for _, v := range patch.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "mailgate-smtp-tls" {
			tlsVolumes[v.Name] = true
		}
	}
	tlsConf := rawSMTPTLS(t, "kubernetes/components/smtp/config.yaml")
	mountedAt := ""
	for _, m := range pc[0].VolumeMounts {
		if tlsVolumes[m.Name] && m.ReadOnly {
			mountedAt = m.MountPath
		}
	}
	if tlsConf.CertFile != path.Join(mountedAt, corev1.TLSCertKey) || tlsConf.KeyFile != path.Join(mountedAt, corev1.TLSPrivateKeyKey) {
		t.Errorf("smtp.tls reads %s and %s; want %s and %s of the Secret mailgate-smtp-tls, mounted read-only (at %q)",
			tlsConf.CertFile, tlsConf.KeyFile, corev1.TLSCertKey, corev1.TLSPrivateKeyKey, mountedAt)
	}
}

// smtpPorts maps the port clients use to the port the door listens on:
// 587 to smtp.listen (STARTTLS), 465 to smtp.listen_tls (implicit TLS).
func smtpPorts(t *testing.T, name string, c *config.Config) map[int]int {
	t.Helper()
	port := func(key, addr string) int {
		_, p, err := net.SplitHostPort(addr)
		n, err2 := strconv.Atoi(p)
		if err != nil || err2 != nil || n == 0 {
			t.Fatalf("%s: %s %q names no fixed port", name, key, addr)
		}
		return n
	}
	if c.SMTP.Listen == "" || c.SMTP.ListenTLS == "" || c.SMTP.TLS.CertFile == "" {
		t.Fatalf("%s: want smtp.listen, smtp.listen_tls and smtp.tls set", name)
	}
	return map[int]int{
		submissionPort: port("smtp.listen", c.SMTP.Listen),
		smtpsPort:      port("smtp.listen_tls", c.SMTP.ListenTLS),
	}
}

// rawSMTPTLS is the smtp.tls of a configuration file as written (with its
// own paths, not the test's made-up files), loaded without checks.
func rawSMTPTLS(t *testing.T, name string) smtpTLSFiles {
	t.Helper()
	var c struct {
		SMTP struct {
			TLS smtpTLSFiles `json:"tls"`
		} `json:"smtp"`
	}
	if err := yaml.Unmarshal(mustRead(t, name), &c); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return c.SMTP.TLS
}

type smtpTLSFiles struct {
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
}

// sameApartFromSMTP fails unless withSMTP is without the SMTP keys
// (smtp:, apps[].smtp, and apps that only SMTP clients use) what without
// is: the copy a deployment needs for the door cannot drift from its
// original.
func sameApartFromSMTP(t *testing.T, name string, withSMTP, without *config.Config) {
	t.Helper()
	a, b := *withSMTP, *without
	a.SMTP, b.SMTP = config.SMTP{}, config.SMTP{}
	strip := func(apps []config.App, keepSMTPOnly bool) []config.App {
		var out []config.App
		for _, app := range apps {
			if !keepSMTPOnly && !slices.ContainsFunc(without.Apps, func(o config.App) bool { return o.ID == app.ID }) {
				if len(app.SMTP.Networks) == 0 {
					t.Errorf("%s: app %s is not in the configuration without the door, and has no smtp.networks", name, app.ID)
				}
				continue
			}
			app.SMTP = config.AppSMTP{}
			// By default the apps of a route share its queue limit: one
			// more app on the route makes every app's share smaller.
			app.Queue = config.QueueLimit{}
			out = append(out, app)
		}
		return out
	}
	a.Apps, b.Apps = strip(a.Apps, false), strip(b.Apps, true)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("%s differs from the configuration without the SMTP door in more than smtp: and apps[].smtp; keep them alike", name)
	}
}
