package config

import "testing"

const webhooksYAML = `
auth:
  signing_key: "0123456789abcdef0123456789abcdef"
routes:
  - name: m365
    type: smtp-auth
    auth:
      username: relay@contoso.com
      oauth: {tenant_id: contoso.onmicrosoft.com, client_id: app, client_secret: s}
templates:
  - name: uptime-kuma
    subject: "{{ .monitor.name }} is {{ if eq .heartbeat.status 1.0 }}up{{ else }}down{{ end }}"
    text_file: "{{DIR}}/kuma.txt"
apps:
  - id: app
    route: m365
    from: {default: relay@contoso.com}
    recipients: {allowed: ["*@contoso.com"]}
    webhooks:
      to: ["oncall@contoso.com"]
      recipients_label: email_to
      grafana_secret_file: "{{DIR}}/grafana.secret"
      alertmanager_template: uptime-kuma
`

func TestWebhookKeys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.write(t, "kuma.txt", "{{ .msg }}\n")
	b.write(t, "grafana.secret", "s3cret\n")
	c := b.load(t, webhooksYAML)
	if got := c.Templates[0].Text; got != "{{ .msg }}\n" {
		t.Errorf("text_file read as %q", got)
	}
	w := c.Apps[0].Webhooks
	if w.GrafanaSecret != "s3cret" || w.GrafanaTemplate != "grafana" || w.GrafanaSignatureHeader != "X-Grafana-Alerting-Signature" {
		t.Errorf("webhooks %+v", w)
	}
	if c.Delivery.MaxScheduleAhead.Hours() != 72 {
		t.Errorf("max_schedule_ahead %s", c.Delivery.MaxScheduleAhead)
	}
}

func TestWebhookProblems(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.write(t, "grafana.secret", "s3cret\n")
	problems := b.check(t, `
auth:
  signing_key: "0123456789abcdef0123456789abcdef"
routes:
  - name: m365
    type: smtp-auth
    auth:
      username: relay@contoso.com
      oauth: {tenant_id: contoso.onmicrosoft.com, client_id: app, client_secret: s}
templates:
  - name: broken
    subject: "{{ .a "
    text: "x"
  - name: nofunc
    subject: "s"
    text: "{{ shout .a }}"
  - name: badhtml
    subject: "s"
    html: "{{ if }}"
  - name: Bad Name
    subject: "s"
    text: "t"
  - name: nothing
    subject: "s"
  - name: missing
    subject: "s"
    text_file: "{{DIR}}/nope.txt"
apps:
  - id: app
    route: m365
    from: {default: relay@contoso.com}
    recipients: {allowed: ["*@contoso.com"]}
    webhooks:
      to: ["oncall@example.com", "not an address"]
      recipients_label: "email-to"
      grafana_template: nope
`)
	wantProblem(t, problems, "templates[broken].subject", "unclosed action")
	wantProblem(t, problems, "templates[nofunc].text", `function "shout" not defined`)
	wantProblem(t, problems, "templates[badhtml].html", "missing value for if")
	wantProblem(t, problems, "templates[Bad Name].name", "lower-case")
	wantProblem(t, problems, "templates[nothing].text", "text or html is required")
	wantProblem(t, problems, "templates[missing].text_file", "cannot read")
	wantProblem(t, problems, "apps[app].webhooks.to[0]", "recipients.allowed")
	wantProblem(t, problems, "apps[app].webhooks.to[1]", "not an address")
	wantProblem(t, problems, "apps[app].webhooks.recipients_label", "not a label name")
	wantProblem(t, problems, "apps[app].webhooks.grafana_template", `no template is named "nope"`)
}
