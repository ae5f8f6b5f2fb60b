package config

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"time"

	"github.com/mailgate/mailgate/internal/addrpolicy"
	"github.com/mailgate/mailgate/internal/apppolicy"
	"github.com/mailgate/mailgate/internal/templates"
)

// The keys of the alerting webhooks, the templates and scheduled sending:
// the top-level templates list, apps[].webhooks and
// delivery.max_schedule_ahead.

// Template is a named mail template: subject and text are Go
// text/template, html is html/template. text and html may instead be read
// from text_file and html_file, read once at load, as they are.
type Template struct {
	Name     string `yaml:"name"`
	Subject  string `yaml:"subject"`
	Text     string `yaml:"text"`
	TextFile string `yaml:"text_file"`
	HTML     string `yaml:"html"`
	HTMLFile string `yaml:"html_file"`
}

// Source is the template as package templates parses it.
func (t *Template) Source() templates.Source {
	return templates.Source{Name: t.Name, Subject: t.Subject, Text: t.Text, HTML: t.HTML}
}

// AppWebhooks configures what the app's /v1/webhooks/* calls send.
type AppWebhooks struct {
	// To are the default recipients; ?to= on a call replaces them.
	To []string `yaml:"to"`
	// RecipientsLabel, when set, is an alert label whose value adds
	// recipients (still checked against the app's recipient policy).
	RecipientsLabel string `yaml:"recipients_label"`
	// GrafanaSecret makes Grafana's HMAC-SHA256 signature required on
	// /v1/webhooks/grafana.
	GrafanaSecret     string `yaml:"grafana_secret"`
	GrafanaSecretFile string `yaml:"grafana_secret_file"`
	// GrafanaSignatureHeader is the header Grafana's contact point sends
	// the signature in; GrafanaTimestampHeader, when set, the header of
	// the timestamp it signs with the body.
	GrafanaSignatureHeader string `yaml:"grafana_signature_header"`
	GrafanaTimestampHeader string `yaml:"grafana_timestamp_header"`
	// AlertmanagerTemplate and GrafanaTemplate name the templates of the
	// two alert webhooks; the built-in ones by default.
	AlertmanagerTemplate string `yaml:"alertmanager_template"`
	GrafanaTemplate      string `yaml:"grafana_template"`
}

// Defaults of the webhook keys.
const (
	DefaultGrafanaSignatureHeader = "X-Grafana-Alerting-Signature"
	DefaultAlertmanagerTemplate   = "alertmanager"
	DefaultGrafanaTemplate        = "grafana"
	// DefaultMaxScheduleAhead is how far ahead send_at may be.
	DefaultMaxScheduleAhead = 72 * time.Hour
)

var (
	templateNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	labelNameRE    = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

func (a *App) webhookDefaults() {
	setString(&a.Webhooks.GrafanaSignatureHeader, DefaultGrafanaSignatureHeader)
	setString(&a.Webhooks.AlertmanagerTemplate, DefaultAlertmanagerTemplate)
	setString(&a.Webhooks.GrafanaTemplate, DefaultGrafanaTemplate)
}

// readTemplateFiles fills text and html from text_file and html_file, as
// they are (a template's trailing newline may matter).
func (c *Config) readTemplateFiles() []Problem {
	var problems []Problem
	for i := range c.Templates {
		t := &c.Templates[i]
		k := templateKey(i, t)
		for _, f := range []struct {
			key  string
			dst  *string
			file string
		}{{"text", &t.Text, t.TextFile}, {"html", &t.HTML, t.HTMLFile}} {
			if f.file == "" {
				continue
			}
			if *f.dst != "" {
				problems = append(problems, Problem{Key: k + "." + f.key, Message: fmt.Sprintf("both %s and %s_file are set; use one", f.key, f.key)})
				continue
			}
			data, err := os.ReadFile(f.file)
			if err != nil {
				var pe *os.PathError
				if errors.As(err, &pe) {
					err = pe.Err
				}
				problems = append(problems, Problem{Key: k + "." + f.key + "_file", Message: fmt.Sprintf("cannot read %s: %v", f.file, err)})
				continue
			}
			*f.dst = string(data)
		}
	}
	return problems
}

func templateKey(i int, t *Template) string {
	if t.Name != "" {
		return "templates[" + t.Name + "]"
	}
	return fmt.Sprintf("templates[%d]", i)
}

// builtinTemplates are the names that exist without configuration.
var builtinTemplates = []string{DefaultAlertmanagerTemplate, DefaultGrafanaTemplate}

// templates checks every configured template by parsing it, so that a
// syntax error or an unknown function is found by `mailgate config check`
// rather than by the first webhook call.
func (v *validator) templates(c *Config) {
	seen := map[string]int{}
	for i := range c.Templates {
		t := &c.Templates[i]
		k := templateKey(i, t)
		switch {
		case t.Name == "":
			v.add(k+".name", "required")
		case !templateNameRE.MatchString(t.Name):
			v.add(k+".name", "%q: use lower-case letters, digits, '.', '_' and '-' (the name is a URL path segment)", t.Name)
		}
		if j, dup := seen[t.Name]; dup && t.Name != "" {
			v.add(k+".name", "%q is already the name of templates[%d]", t.Name, j)
		}
		seen[t.Name] = i
		if _, err := templates.Parse(t.Source(), nil); err != nil {
			var pe *templates.ParseError
			if errors.As(err, &pe) {
				v.add(k+"."+pe.Part, "%v", pe.Err)
			} else {
				v.add(k, "%v", err)
			}
		}
	}
}

func (c *Config) hasTemplate(name string) bool {
	for _, b := range builtinTemplates {
		if b == name {
			return true
		}
	}
	for i := range c.Templates {
		if c.Templates[i].Name == name {
			return true
		}
	}
	return false
}

// webhooks checks an app's webhooks block: its default recipients must be
// addresses the app may send to, so that a call without ?to= cannot be
// refused for them.
func (v *validator) webhooks(c *Config, key string, a *App) {
	w := &a.Webhooks
	k := key + ".webhooks"
	// The same compiled policy the doors use; its own problems are
	// reported by the app's check.
	pol, _ := apppolicy.Compile(a.PolicySpec())
	for i, s := range w.To {
		m, err := addrpolicy.ParseMailbox(s)
		if err != nil {
			v.add(fmt.Sprintf("%s.to[%d]", k, i), "%q is not an address such as oncall@contoso.com: %v", s, err)
			continue
		}
		if pol != nil && pol.CheckRecipients([]string{m.Address}) != nil {
			v.add(fmt.Sprintf("%s.to[%d]", k, i), "%q is not within the app's recipients.allowed", m.Address)
		}
	}
	if w.RecipientsLabel != "" && !labelNameRE.MatchString(w.RecipientsLabel) {
		v.add(k+".recipients_label", "%q is not a label name (letters, digits and _, not starting with a digit)", w.RecipientsLabel)
	}
	for _, h := range []struct{ key, v string }{
		{"grafana_signature_header", w.GrafanaSignatureHeader},
		{"grafana_timestamp_header", w.GrafanaTimestampHeader},
	} {
		if h.v != "" && checkHeaderName(h.v) != nil {
			v.add(k+"."+h.key, "%q is not an HTTP header name", h.v)
		}
	}
	for _, t := range []struct{ key, name string }{
		{"alertmanager_template", w.AlertmanagerTemplate},
		{"grafana_template", w.GrafanaTemplate},
	} {
		if !c.hasTemplate(t.name) {
			v.add(k+"."+t.key, "no template is named %q", t.name)
		}
	}
}

func checkHeaderName(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == ':' {
			return errors.New("not a token")
		}
	}
	return nil
}
