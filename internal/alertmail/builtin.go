package alertmail

import "github.com/mailgate/mailgate/internal/templates"

// The built-in templates, one per source. A configured template of the
// same name replaces one (templates.NewSet), and an app may name another.
//
// The mail is made to be read on a phone in a few seconds: the subject is
// Alertmanager's own email subject ([FIRING:3] HighLatency (api page)),
// the body starts with what is wrong and since when, one block per alert,
// the labels last, then the links (source, silence, dashboard).

// Builtin returns the built-in alert templates.
func Builtin() []templates.Source {
	return []templates.Source{
		{Name: SourceAlertmanager, Subject: subject, Text: text, HTML: html},
		{Name: SourceGrafana, Subject: grafanaSubject, Text: text, HTML: html},
	}
}

const subject = `[{{ upper .Status }}{{ if eq .Status "firing" }}:{{ len .Alerts.Firing }}{{ end }}] ` +
	`{{ join " " .GroupLabels.Values }}` +
	`{{ with .CommonLabels.Remove .GroupLabels.Names }}{{ if . }} ({{ join " " .Values }}){{ end }}{{ end }}`

// grafanaSubject is Grafana's own email subject, which also counts the
// resolved alerts of a notification that still has firing ones.
const grafanaSubject = `[{{ upper .Status }}{{ if eq .Status "firing" }}:{{ len .Alerts.Firing }}` +
	`{{ with .Alerts.Resolved }}, RESOLVED:{{ len . }}{{ end }}{{ end }}] ` +
	`{{ join " " .GroupLabels.Values }}` +
	`{{ with .CommonLabels.Remove .GroupLabels.Names }}{{ if . }} ({{ join " " .Values }}){{ end }}{{ end }}`

// Grafana's message is shown when the contact point has one of its own:
// its default ("**Firing**" and a list of every alert) would only repeat
// the blocks below.
const text = `{{ define "alert" -}}
{{ if .Resolved }}RESOLVED{{ else }}FIRING{{ end }}: {{ default "alert" .Labels.alertname }}
{{ with .Annotations.summary }}{{ . }}
{{ end }}{{ with .Annotations.description }}{{ . }}
{{ end }}{{ with .ValueString }}Value: {{ . }}
{{ end }}Started: {{ timeFormat "2006-01-02 15:04:05 UTC" .StartsAt }}{{ if not .Resolved }} ({{ since .StartsAt }} ago){{ end }}
{{ if .Resolved }}Ended:   {{ timeFormat "2006-01-02 15:04:05 UTC" .EndsAt }}
{{ end }}Labels:
{{ range .Labels.SortedPairs }}  {{ .Name }} = {{ .Value }}
{{ end }}{{ range $k, $v := .Annotations }}{{ if and (ne $k "summary") (ne $k "description") }}{{ $k }}: {{ $v }}
{{ end }}{{ end }}{{ with .GeneratorURL }}Source:    {{ . }}
{{ end }}{{ with .DashboardURL }}Dashboard: {{ . }}
{{ end }}{{ with .PanelURL }}Panel:     {{ . }}
{{ end }}{{ if not .Resolved }}{{ with .SilenceURL }}Silence:   {{ . }}
{{ end }}{{ end }}{{ end -}}
{{ with .Message }}{{ if and (eq $.Source "grafana") (not (hasPrefix "**Firing**" .)) (not (hasPrefix "**Resolved**" .)) }}{{ . }}

{{ end }}{{ end -}}
{{ with .Alerts.Firing }}{{ len . }} firing{{ end }}{{ if and .Alerts.Firing .Alerts.Resolved }}, {{ end }}{{ with .Alerts.Resolved }}{{ len . }} resolved{{ end }}
{{ if gt .TruncatedAlerts 0 }}{{ .TruncatedAlerts }} more alerts were left out by the sender (max_alerts).
{{ end }}
{{ range .Alerts.Firing }}{{ template "alert" . }}
{{ end }}{{ range .Alerts.Resolved }}{{ template "alert" . }}
{{ end }}--
{{ with .ExternalURL }}Alerts: {{ . }}
{{ end }}Receiver: {{ .Receiver }}
`

const html = `{{ define "alert" -}}
<div style="margin:0 0 16px 0;padding:8px 12px;border-left:6px solid {{ if .Resolved }}#2e7d32{{ else }}#c62828{{ end }};background:#fafafa">
<div style="font-size:16px;font-weight:bold;color:{{ if .Resolved }}#2e7d32{{ else }}#c62828{{ end }}">{{ if .Resolved }}RESOLVED{{ else }}FIRING{{ end }}: {{ default "alert" .Labels.alertname }}</div>
{{ with .Annotations.summary }}<div style="font-size:15px;margin:4px 0">{{ . }}</div>{{ end }}
{{ with .Annotations.description }}<div style="margin:4px 0;white-space:pre-wrap">{{ . }}</div>{{ end }}
{{ with .ValueString }}<div style="margin:4px 0;color:#555">Value: {{ . }}</div>{{ end }}
<div style="margin:4px 0;color:#555">Started {{ timeFormat "2006-01-02 15:04:05 UTC" .StartsAt }}{{ if not .Resolved }} ({{ since .StartsAt }} ago){{ end }}{{ if .Resolved }}<br>Ended {{ timeFormat "2006-01-02 15:04:05 UTC" .EndsAt }}{{ end }}</div>
<div style="margin:6px 0">{{ with .GeneratorURL }}<a href="{{ . }}">Source</a> {{ end }}{{ with .DashboardURL }}&middot; <a href="{{ . }}">Dashboard</a> {{ end }}{{ with .PanelURL }}&middot; <a href="{{ . }}">Panel</a> {{ end }}{{ if not .Resolved }}{{ with .SilenceURL }}&middot; <a href="{{ . }}">Silence</a>{{ end }}{{ end }}</div>
<table style="border-collapse:collapse;font-size:13px;color:#333">
{{ range .Labels.SortedPairs }}<tr><td style="padding:1px 8px 1px 0;color:#777">{{ .Name }}</td><td style="padding:1px 0">{{ .Value }}</td></tr>
{{ end }}{{ range $k, $v := .Annotations }}{{ if and (ne $k "summary") (ne $k "description") }}<tr><td style="padding:1px 8px 1px 0;color:#777">{{ $k }}</td><td style="padding:1px 0">{{ $v }}</td></tr>
{{ end }}{{ end }}</table>
</div>
{{ end -}}
<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:14px;margin:0;padding:12px">
{{ if eq .Source "grafana" }}{{ with .Message }}{{ if and (not (hasPrefix "**Firing**" .)) (not (hasPrefix "**Resolved**" .)) }}<div style="margin:0 0 12px 0;white-space:pre-wrap">{{ . }}</div>{{ end }}{{ end }}{{ end }}
<div style="margin:0 0 12px 0">{{ with .Alerts.Firing }}<b style="color:#c62828">{{ len . }} firing</b> {{ end }}{{ with .Alerts.Resolved }}<b style="color:#2e7d32">{{ len . }} resolved</b>{{ end }}
{{ if gt .TruncatedAlerts 0 }}<br>{{ .TruncatedAlerts }} more alerts were left out by the sender (max_alerts).{{ end }}</div>
{{ range .Alerts.Firing }}{{ template "alert" . }}{{ end }}
{{ range .Alerts.Resolved }}{{ template "alert" . }}{{ end }}
<div style="color:#777;font-size:12px">{{ with .ExternalURL }}<a href="{{ . }}">{{ . }}</a> &middot; {{ end }}receiver {{ .Receiver }}</div>
</body></html>
`
