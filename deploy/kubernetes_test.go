package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/test/testpki"
)

// kustomization is the part of kustomize's Kustomization the manifests use,
// decoded strictly: a key it does not list fails the test, so add a field
// here when a kustomization starts using it. (kustomize's own types live in
// sigs.k8s.io/kustomize/api, a module much larger than this check.)
type kustomization struct {
	APIVersion         string            `json:"apiVersion"`
	Kind               string            `json:"kind"`
	Namespace          string            `json:"namespace,omitempty"`
	Resources          []string          `json:"resources,omitempty"`
	Components         []string          `json:"components,omitempty"`
	Patches            []patch           `json:"patches,omitempty"`
	ConfigMapGenerator []generator       `json:"configMapGenerator,omitempty"`
	Images             []image           `json:"images,omitempty"`
	Replicas           []replicas        `json:"replicas,omitempty"`
	Labels             []json.RawMessage `json:"labels,omitempty"`
}

type generator struct {
	Name     string   `json:"name"`
	Behavior string   `json:"behavior,omitempty"`
	Files    []string `json:"files,omitempty"`
	Options  *struct {
		Labels map[string]string `json:"labels,omitempty"`
	} `json:"options,omitempty"`
}

// patch is a patch file; its target is the object it names.
type patch struct {
	Path string `json:"path"`
}

type image struct {
	Name    string `json:"name"`
	NewName string `json:"newName,omitempty"`
	NewTag  string `json:"newTag,omitempty"`
}

type replicas struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// manifests are the decoded objects of one kustomization directory.
type manifests struct {
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	pdbs            []*policyv1.PodDisruptionBudget
	serviceMonitors []*monitoringv1.ServiceMonitor
	kinds           []string
	// patches are the objects of the patch files: partial, so only
	// decoded, not checked as whole objects.
	patches *manifests
	// config is the configuration the kustomization generates, if any.
	config *config.Config
}

// TestKubernetesManifests decodes every manifest of the kustomize base and
// the example overlay strictly against the Kubernetes API types (and the
// Prometheus Operator's for the ServiceMonitor): an unknown or misspelt
// field, or a value of the wrong type, fails. Then it checks what the
// manifests promise: the role split, the probes, the hardening, selectors
// that select, and a configuration mailgate loads.
func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	base := decodeKustomization(t, "kubernetes/base")
	decodeKustomization(t, "kubernetes/overlays/example")

	for _, kind := range []string{"Deployment", "Service", "PodDisruptionBudget", "ServiceMonitor", "ServiceAccount"} {
		if !slices.Contains(base.kinds, kind) {
			t.Errorf("the base has no %s", kind)
		}
	}
	roles := map[string]*appsv1.Deployment{}
	for _, d := range base.deployments {
		checkDeployment(t, d)
		for i, a := range d.Spec.Template.Spec.Containers[0].Args {
			if a == "--role" && i+1 < len(d.Spec.Template.Spec.Containers[0].Args) {
				roles[d.Spec.Template.Spec.Containers[0].Args[i+1]] = d
			}
		}
	}
	if roles["api"] == nil || roles["worker"] == nil || len(roles) != 2 {
		t.Errorf("want one Deployment with --role api and one with --role worker, have %v", keys(roles))
	}
	// Every selector selects the pods of exactly one role.
	selects := func(what string, sel map[string]string) {
		t.Helper()
		n := 0
		for _, d := range base.deployments {
			if labels.SelectorFromSet(sel).Matches(labels.Set(d.Spec.Template.Labels)) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s selects the pods of %d Deployments, want 1", what, n)
		}
	}
	for _, s := range base.services {
		selects("Service "+s.Name, s.Spec.Selector)
		for _, p := range s.Spec.Ports {
			if p.TargetPort.StrVal != "http" {
				t.Errorf("Service %s: port %s targets %q, want the containers' port http", s.Name, p.Name, p.TargetPort.String())
			}
		}
	}
	covered := map[string]bool{}
	for _, p := range base.pdbs {
		selects("PodDisruptionBudget "+p.Name, p.Spec.Selector.MatchLabels)
		covered[p.Spec.Selector.MatchLabels["app.kubernetes.io/component"]] = true
	}
	if !covered["api"] || !covered["worker"] {
		t.Errorf("want a PodDisruptionBudget for each role, have %v", covered)
	}
	// The ServiceMonitor finds both roles' Services, on a port they have.
	for _, sm := range base.serviceMonitors {
		sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil {
			t.Fatalf("ServiceMonitor %s: %v", sm.Name, err)
		}
		scraped := map[string]bool{}
		for _, s := range base.services {
			if !sel.Matches(labels.Set(s.Labels)) {
				continue
			}
			for _, e := range sm.Spec.Endpoints {
				if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == e.Port }) {
					t.Errorf("ServiceMonitor %s: Service %s has no port %q", sm.Name, s.Name, e.Port)
				}
				if e.Path != "/metrics" {
					t.Errorf("ServiceMonitor %s: path %q, want /metrics", sm.Name, e.Path)
				}
			}
			scraped[s.Labels["app.kubernetes.io/component"]] = true
		}
		if !scraped["api"] || !scraped["worker"] {
			t.Errorf("ServiceMonitor %s scrapes %v, want api and worker", sm.Name, scraped)
		}
	}
}

// checkDeployment checks the probes and the hardening of a mailgate
// Deployment.
func checkDeployment(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	name := "Deployment " + d.Name
	if d.Spec.Selector == nil || !labels.SelectorFromSet(d.Spec.Selector.MatchLabels).Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("%s: its selector does not select its own pods", name)
	}
	pod := d.Spec.Template.Spec
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("%s: want runAsNonRoot and a non-zero runAsUser", name)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: want seccompProfile RuntimeDefault", name)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("%s: want automountServiceAccountToken: false", name)
	}
	secretVolumes := map[string]bool{}
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			secretVolumes[v.Name] = true
		}
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%s: want one container, have %d", name, len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: want readOnlyRootFilesystem", name)
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: want allowPrivilegeEscalation: false", name)
	}
	if sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("%s: want capabilities drop [ALL] and none added", name)
	}
	probe := func(what string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port.StrVal != "http" {
			t.Errorf("%s: want a %s probe GET %s on port http", name, what, path)
		}
	}
	probe("readiness", c.ReadinessProbe, "/readyz")
	probe("liveness", c.LivenessProbe, "/healthz")
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "http" && p.ContainerPort == 8080 }) {
		t.Errorf("%s: want container port http 8080 (listen in config.yaml)", name)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := c.Resources.Requests[r]; !ok || q.IsZero() {
			t.Errorf("%s: no %s request", name, r)
		}
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok || q.Cmp(c.Resources.Requests[corev1.ResourceMemory]) < 0 {
		t.Errorf("%s: want a memory limit at or above the request", name)
	}
	secretsMounted := false
	for _, m := range c.VolumeMounts {
		if secretVolumes[m.Name] {
			secretsMounted = m.ReadOnly && strings.HasPrefix(m.MountPath, "/run/secrets/")
		}
	}
	if !secretsMounted {
		t.Errorf("%s: want the Secret mounted read-only under /run/secrets/", name)
	}
	if !slices.Equal(c.Args[:3], []string{"serve", "--config", "/etc/mailgate/config.yaml"}) {
		t.Errorf("%s: args %v, want serve --config /etc/mailgate/config.yaml --role ROLE", name, c.Args)
	}
}

// decodeKustomization decodes dir's kustomization.yaml (a Kustomization or
// a Component) and every manifest and patch it lists, strictly, and loads
// the configuration it generates. Resources and components that are
// directories are checked on their own (by their own call).
func decodeKustomization(t *testing.T, dir string) manifests {
	t.Helper()
	var k kustomization
	decodeStrict(t, filepath.Join(dir, "kustomization.yaml"), mustRead(t, filepath.Join(dir, "kustomization.yaml")), &k)
	switch k.APIVersion + " " + k.Kind {
	case "kustomize.config.k8s.io/v1beta1 Kustomization", "kustomize.config.k8s.io/v1alpha1 Component":
	default:
		t.Errorf("%s/kustomization.yaml: apiVersion %q kind %q", dir, k.APIVersion, k.Kind)
	}
	m := manifests{patches: &manifests{}}
	for _, c := range k.Components {
		if _, err := os.Stat(filepath.Join(dir, c, "kustomization.yaml")); err != nil {
			t.Errorf("%s/kustomization.yaml: component %s: %v", dir, c, err)
		}
	}
	for _, p := range k.Patches {
		if p.Path == "" {
			t.Errorf("%s/kustomization.yaml: a patch without a path", dir)
			continue
		}
		decodeManifests(t, filepath.Join(dir, p.Path), m.patches)
	}
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s/kustomization.yaml: resource %s: %v", dir, r, err)
			continue
		}
		if st.IsDir() {
			if _, err := os.Stat(filepath.Join(p, "kustomization.yaml")); err != nil {
				t.Errorf("%s/kustomization.yaml: resource %s is a directory without a kustomization.yaml", dir, r)
			}
			continue
		}
		decodeManifests(t, p, &m)
	}
	for _, g := range k.ConfigMapGenerator {
		for _, f := range g.Files {
			p := filepath.Join(dir, f)
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s/kustomization.yaml: configMapGenerator %s: %v", dir, g.Name, err)
				continue
			}
			if f == "config.yaml" {
				m.config = loadConfig(t, p, fakeSecrets(t))
			}
		}
	}
	return m
}

// decodeManifests decodes each YAML document of path into its API type.
func decodeManifests(t *testing.T, path string, m *manifests) {
	t.Helper()
	for i, doc := range documents(mustRead(t, path)) {
		where := fmt.Sprintf("%s (document %d)", path, i+1)
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		m.kinds = append(m.kinds, tm.Kind)
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 Deployment":
			var o appsv1.Deployment
			decodeStrict(t, where, doc, &o)
			m.deployments = append(m.deployments, &o)
		case "v1 Service":
			var o corev1.Service
			decodeStrict(t, where, doc, &o)
			m.services = append(m.services, &o)
		case "policy/v1 PodDisruptionBudget":
			var o policyv1.PodDisruptionBudget
			decodeStrict(t, where, doc, &o)
			m.pdbs = append(m.pdbs, &o)
		case "monitoring.coreos.com/v1 ServiceMonitor":
			var o monitoringv1.ServiceMonitor
			decodeStrict(t, where, doc, &o)
			m.serviceMonitors = append(m.serviceMonitors, &o)
		case "v1 ServiceAccount":
			decodeStrict(t, where, doc, &corev1.ServiceAccount{})
		case "v1 Namespace":
			decodeStrict(t, where, doc, &corev1.Namespace{})
		case "v1 ConfigMap":
			decodeStrict(t, where, doc, &corev1.ConfigMap{})
		default:
			t.Errorf("%s: %s %s: no type to check it against; add one to decodeManifests", where, tm.APIVersion, tm.Kind)
		}
	}
}

// decodeStrict is sigs.k8s.io/yaml's UnmarshalStrict (YAML to JSON, then
// encoding/json with unknown fields refused and duplicate keys refused),
// the decoding kubectl's own validation does field by field.
func decodeStrict(t *testing.T, where string, doc []byte, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, into); err != nil {
		t.Errorf("%s: %v", where, err)
	}
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// documents splits a multi-document YAML file, dropping empty documents.
func documents(data []byte) [][]byte {
	var out [][]byte
	for _, d := range docSeparator.Split(string(data), -1) {
		if len(bytes.TrimSpace(stripComments([]byte(d)))) > 0 {
			out = append(out, []byte(d))
		}
	}
	return out
}

func stripComments(b []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}

// k8sSecretDirs are where the Kubernetes manifests mount their Secrets:
// mailgate-secrets, and the SMTP door's kubernetes.io/tls Secret.
var k8sSecretDirs = []string{"/run/secrets/mailgate/", "/run/secrets/mailgate-smtp/"}

// loadConfig loads a Kubernetes configuration with its secret files
// replaced by the made-up ones in dir (fakeSecrets).
func loadConfig(t *testing.T, path, dir string) *config.Config {
	t.Helper()
	c := loadWithSecrets(t, path, dir, k8sSecretDirs...)
	if c.Redis.URL != fakeRedisURL {
		t.Errorf("%s: redis.url_file was not read", path)
	}
	return c
}

const fakeRedisURL = "redis://:password@redis:6379/0"

// fakeSecrets writes made-up versions of every secret file the kit's
// configurations read into a new directory: the signing key, the OAuth
// client secret, the Redis URL, and a certificate for the SMTP door under
// the names compose (smtp.crt, smtp.key) and a kubernetes.io/tls Secret
// (tls.crt, tls.key) give it.
func fakeSecrets(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"signing-key":        strings.Repeat("k", 48),
		"m365-client-secret": "client-secret",
		"redis-url":          fakeRedisURL,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	certPEM, keyPEM := testpki.SelfSigned(t, "relay.contoso.com")
	for name, content := range map[string][]byte{"smtp.crt": certPEM, "smtp.key": keyPEM, "tls.crt": certPEM, "tls.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// loadWithSecrets loads path the way `mailgate serve` does (unknown keys,
// bad values and a From policy its routes cannot honour all fail), with the
// files it names under each of secretDirs read from dir instead.
func loadWithSecrets(t *testing.T, path, dir string, secretDirs ...string) *config.Config {
	t.Helper()
	text := string(mustRead(t, path))
	for _, d := range secretDirs {
		text = strings.ReplaceAll(text, d, dir+string(filepath.Separator))
	}
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(p, func(name string) string {
		t.Errorf("%s uses ${%s}: the deployment kit sets no environment", path, name)
		return ""
	})
	if err != nil {
		t.Fatalf("%s does not load:\n%v", path, err)
	}
	return c
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
