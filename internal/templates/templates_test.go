package templates

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var fixedNow = func() time.Time { return time.Date(2026, 12, 1, 13, 20, 0, 0, time.UTC) }

func mustParse(t *testing.T, src Source) *Template {
	t.Helper()
	if src.Name == "" {
		src.Name = "t"
	}
	tpl, err := Parse(src, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	return tpl
}

func TestParseErrorsNameThePart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		src  Source
		part string
		msg  string
	}{
		{Source{Subject: "{{ .a ", Text: "x"}, "subject", "unclosed action"},
		{Source{Subject: "s", Text: "{{ nosuch . }}"}, "text", `function "nosuch" not defined`},
		{Source{Subject: "s", HTML: "{{ end }}"}, "html", "unexpected {{end}}"},
		{Source{Subject: "", Text: "x"}, "subject", "required"},
		{Source{Subject: "s"}, "text", "text or html is required"},
	} {
		_, err := Parse(tc.src, nil)
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Part != tc.part || !strings.Contains(pe.Error(), tc.msg) {
			t.Errorf("%+v: got %v, want a %s error with %q", tc.src, err, tc.part, tc.msg)
		}
	}
}

func TestRender(t *testing.T) {
	t.Parallel()
	tpl := mustParse(t, Source{
		Subject: "{{ .name }}\r\nBcc: x@example.com\t{{ .missing }}",
		Text:    "[{{ .missing }}] {{ default \"none\" .empty }} {{ join \", \" .list }} {{ title \"disk full\" }} {{ truncate 5 .name }}",
		HTML:    `<p>{{ .name }}</p><a href="{{ .url }}">x</a>`,
	})
	r, err := tpl.Render(map[string]any{"name": "<b>db-1</b>", "empty": "", "list": []any{"a", 1.5}, "url": "javascript:alert(1)"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Subject != "<b>db-1</b> Bcc: x@example.com" {
		t.Errorf("subject %q", r.Subject)
	}
	if r.Text != "[] none a, 1.5 Disk Full <b>d…" {
		t.Errorf("text %q", r.Text)
	}
	if !strings.Contains(r.HTML, "&lt;b&gt;db-1&lt;/b&gt;") || strings.Contains(r.HTML, "javascript:") {
		t.Errorf("html %q", r.HTML)
	}
}

func TestRenderFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		src  Source
		data any
		part string
		msg  string
	}{
		{Source{Subject: "{{ required \"name\" .name }}", Text: "x"}, map[string]any{}, "subject", "name is required"},
		{Source{Subject: "s", Text: "{{ .a.b }}"}, map[string]any{"a": "str"}, "text", "can't evaluate field b"},
		{Source{Subject: "s", Text: "{{ fail \"no\" }}"}, nil, "text", "no"},
		{Source{Subject: "s", Text: "{{ range .l }}{{ $.big }}{{ end }}"},
			map[string]any{"l": make([]any, 5), "big": strings.Repeat("x", MaxBody/4)}, "text", "larger than the limit"},
		{Source{Subject: "s", Text: "{{ if .x }}x{{ end }}"}, map[string]any{}, "text", "both empty"},
	} {
		tpl := mustParse(t, tc.src)
		_, err := tpl.Render(tc.data)
		var ee *ExecError
		if !errors.As(err, &ee) || ee.Part != tc.part || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%+v: got %v, want a %s error with %q", tc.src, err, tc.part, tc.msg)
		}
	}
}

func TestSubjectIsCut(t *testing.T) {
	t.Parallel()
	r, err := mustParse(t, Source{Subject: "{{ .s }}", Text: "x"}).Render(map[string]any{"s": strings.Repeat("é", 400)})
	if err != nil {
		t.Fatal(err)
	}
	if n := len([]rune(r.Subject)); n != MaxSubject || !strings.HasSuffix(r.Subject, "…") {
		t.Errorf("subject of %d runes: %q", n, r.Subject)
	}
}

func TestTimeFunctions(t *testing.T) {
	t.Parallel()
	tpl := mustParse(t, Source{Subject: "s",
		Text: `{{ since .t }}|{{ timeFormat "15:04" .t }}|{{ timeFormat "2006-01-02" .unix }}|{{ since .zbx }}|{{ humanizeDuration 3725 }}`})
	r, err := tpl.Render(map[string]any{"t": "2026-12-01T12:05:00Z", "unix": 1764547200.0, "zbx": "2026-11-28 13:20:00"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Text != "1h15m|12:05|2025-12-01|3d0h|1h2m" {
		t.Errorf("text %q", r.Text)
	}
}

func TestSetOverridesBuiltins(t *testing.T) {
	t.Parallel()
	s, err := NewSet([]Source{{Name: "alertmanager", Subject: "builtin", Text: "x"}},
		[]Source{{Name: "alertmanager", Subject: "mine", Text: "x"}}, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Get("alertmanager").Render(nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Subject != "mine" || s.Get("nope") != nil {
		t.Errorf("subject %q", r.Subject)
	}
	if _, err := NewSet(nil, []Source{{Name: "bad", Subject: "{{"}}, nil); err == nil || !strings.Contains(err.Error(), "templates[0] (bad)") {
		t.Errorf("err %v", err)
	}
}
