package alertmail

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/templates"
)

// Whatever a sender posts, parsing and rendering through the built-in
// templates either fails cleanly or gives a one-line subject.
func FuzzRender(f *testing.F) {
	for _, name := range []string{"alertmanager", "grafana"} {
		b, err := os.ReadFile("testdata/" + name + ".json")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(name == "grafana", b)
	}
	f.Add(false, []byte(`{"status":"firing","alerts":[{"labels":{"alertname":"a\r\nb"}}]}`))
	set, err := templates.NewSet(Builtin(), nil, func() time.Time { return time.Date(2026, 12, 1, 13, 20, 0, 0, time.UTC) })
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, grafana bool, body []byte) {
		source := SourceAlertmanager
		if grafana {
			source = SourceGrafana
		}
		n, err := Parse(source, body)
		if err != nil {
			return
		}
		r, err := set.Get(source).Render(n)
		if err != nil {
			return
		}
		if strings.ContainsAny(r.Subject, "\r\n") {
			t.Fatalf("subject %q spans lines", r.Subject)
		}
		for _, v := range Thread("app", n, "contoso.com") {
			if strings.ContainsAny(v, "\r\n") {
				t.Fatalf("threading header %q spans lines", v)
			}
		}
	})
}
