// Package templates renders a mail's subject, text and HTML from a named
// template and any data: a webhook's JSON body, an Alertmanager
// notification, the "data" of a submission.
//
// Subject and text are Go text/template, HTML is html/template, so every
// value a client sends is escaped for its HTML context by default (an
// annotation holding <script> arrives as text, not as markup). Templates are
// parsed once, when the configuration is loaded; a template that does not
// parse, or names a function that does not exist, is refused then with the
// part it is in, so `mailgate config check` finds it.
//
// A key the data lacks renders as nothing, in every part; `required`
// turns it into an error where it matters.
//
// Rendering is bounded: each part's output is capped (MaxSubject, MaxBody)
// and a failure (a missing function argument, a field of a string, an
// explicit `required` or `fail`) is an *ExecError carrying the template's
// own message, which the API hands back as a 422. The subject is folded to
// one line: a CR or LF from the data becomes a space, so a hostile label
// can never start a header of its own.
//
// The functions (Funcs) are a small set chosen to be safe with hostile
// data: no file, network or environment access, nothing that loops on its
// own.
package templates

import (
	"bytes"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"strings"
	texttemplate "text/template"
	"time"
	"unicode/utf8"
)

// Output limits. A subject longer than MaxSubject runes is cut (a phone
// shows the first fifty or so anyway); a body part longer than MaxBody
// bytes is an error, since a cut body could hide what matters.
const (
	MaxSubject = 250
	MaxBody    = 4 << 20
)

// Source is a template as written in the configuration.
type Source struct {
	Name    string
	Subject string
	Text    string
	HTML    string
}

// Template is a parsed Source.
type Template struct {
	name    string
	subject *texttemplate.Template
	text    *texttemplate.Template
	html    *htmltemplate.Template
}

// Name is the template's name.
func (t *Template) Name() string { return t.name }

// ParseError is a template that does not parse; Part is "subject", "text"
// or "html".
type ParseError struct {
	Part string
	Err  error
}

func (e *ParseError) Error() string { return e.Part + ": " + e.Err.Error() }
func (e *ParseError) Unwrap() error { return e.Err }

// ExecError is a template that failed for the data it was given.
type ExecError struct {
	Template string
	Part     string
	Err      error
}

func (e *ExecError) Error() string {
	return fmt.Sprintf("template %q, %s: %v", e.Template, e.Part, e.Err)
}
func (e *ExecError) Unwrap() error { return e.Err }

// ErrTooLarge is wrapped by an ExecError whose output passed MaxBody.
var ErrTooLarge = errors.New("output is larger than the limit")

// Parse parses src with the functions of Funcs. The clock is read by the
// `now` and `since` functions; nil means time.Now. A template needs a
// subject and at least one of text and html.
func Parse(src Source, now func() time.Time) (*Template, error) {
	if now == nil {
		now = time.Now
	}
	if strings.TrimSpace(src.Subject) == "" {
		return nil, &ParseError{Part: "subject", Err: errors.New("is required")}
	}
	if strings.TrimSpace(src.Text) == "" && strings.TrimSpace(src.HTML) == "" {
		return nil, &ParseError{Part: "text", Err: errors.New("text or html is required")}
	}
	fm := Funcs(now)
	t := &Template{name: src.Name}
	var err error
	// missingkey=zero: a key a sender left out renders as nothing rather
	// than "<no value>"; `required` is there for keys that must be present.
	if t.subject, err = texttemplate.New("subject").Option("missingkey=zero").Funcs(fm).Parse(src.Subject); err != nil {
		return nil, &ParseError{Part: "subject", Err: err}
	}
	if src.Text != "" {
		if t.text, err = texttemplate.New("text").Option("missingkey=zero").Funcs(fm).Parse(src.Text); err != nil {
			return nil, &ParseError{Part: "text", Err: err}
		}
	}
	if src.HTML != "" {
		if t.html, err = htmltemplate.New("html").Option("missingkey=zero").Funcs(htmltemplate.FuncMap(fm)).Parse(src.HTML); err != nil {
			return nil, &ParseError{Part: "html", Err: err}
		}
	}
	return t, nil
}

// Rendered is a template's output for one piece of data.
type Rendered struct {
	Subject string // one line, at most MaxSubject runes
	Text    string
	HTML    string
}

// Render executes the template on data.
func (t *Template) Render(data any) (*Rendered, error) {
	var out Rendered
	var b capped
	b.limit = MaxBody
	if err := t.subject.Execute(&b, data); err != nil {
		return nil, t.execError("subject", err)
	}
	out.Subject = oneLine(noValue(b.String()))
	if t.text != nil {
		b = capped{limit: MaxBody}
		if err := t.text.Execute(&b, data); err != nil {
			return nil, t.execError("text", err)
		}
		out.Text = noValue(b.String())
	}
	if t.html != nil {
		b = capped{limit: MaxBody}
		if err := t.html.Execute(&b, data); err != nil {
			return nil, t.execError("html", err)
		}
		out.HTML = b.String()
	}
	if strings.TrimSpace(out.Text) == "" && strings.TrimSpace(out.HTML) == "" {
		return nil, t.execError("text", errors.New("the text and html parts are both empty for this data"))
	}
	if !utf8.ValidString(out.Subject + out.Text + out.HTML) {
		return nil, t.execError("text", errors.New("the output is not valid UTF-8"))
	}
	return &out, nil
}

func (t *Template) execError(part string, err error) error {
	// text/template prefixes its own "template: subject:1:5: executing ..."
	// which already says where; keep it.
	return &ExecError{Template: t.name, Part: part, Err: err}
}

// noValue removes what text/template prints for a key the data lacks
// (with missingkey=zero, a map[string]any still prints "<no value>"):
// webhook bodies leave keys out all the time, and html/template already
// prints nothing for them.
func noValue(s string) string { return strings.ReplaceAll(s, "<no value>", "") }

// oneLine folds every line break and control character to a space, squeezes
// runs of spaces and cuts the result to MaxSubject runes.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == 0x2028 || r == 0x2029 || r == 0x85 {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > MaxSubject {
		r := []rune(s)
		s = strings.TrimSpace(string(r[:MaxSubject-1])) + "…"
	}
	return s
}

// capped is a buffer that refuses to grow past limit, so a template that
// ranges over a huge list stops early instead of filling memory.
type capped struct {
	bytes.Buffer
	limit int
}

func (c *capped) Write(p []byte) (int, error) {
	if c.Len()+len(p) > c.limit {
		return 0, fmt.Errorf("%w (%d bytes)", ErrTooLarge, c.limit)
	}
	return c.Buffer.Write(p)
}

func (c *capped) WriteString(s string) (int, error) {
	if c.Len()+len(s) > c.limit {
		return 0, fmt.Errorf("%w (%d bytes)", ErrTooLarge, c.limit)
	}
	return c.Buffer.WriteString(s)
}

// Set is every template by name.
type Set struct {
	byName map[string]*Template
}

// NewSet parses the built-in templates, then the configured ones; a
// configured template replaces a built-in one of the same name. The error
// of a configured template names it by its index.
func NewSet(builtin, configured []Source, now func() time.Time) (*Set, error) {
	s := &Set{byName: make(map[string]*Template)}
	for _, src := range builtin {
		t, err := Parse(src, now)
		if err != nil {
			return nil, fmt.Errorf("built-in template %q: %w", src.Name, err)
		}
		s.byName[src.Name] = t
	}
	for i, src := range configured {
		t, err := Parse(src, now)
		if err != nil {
			return nil, fmt.Errorf("templates[%d] (%s): %w", i, src.Name, err)
		}
		s.byName[src.Name] = t
	}
	return s, nil
}

// Get returns the template called name, or nil.
func (s *Set) Get(name string) *Template {
	if s == nil {
		return nil
	}
	return s.byName[name]
}
