// Package alertmail turns an Alertmanager or Grafana webhook notification
// into the parts of one mail: the data its templates render, the
// recipients its labels name, and the threading headers that keep the
// firing and resolved mails of one alert group together.
//
// The payloads are read as the senders write them: Alertmanager's
// webhook_config body (notify/webhook Message: template.Data plus version,
// groupKey and truncatedAlerts; https://prometheus.io/docs/alerting/latest/configuration/#webhook_config)
// and Grafana's webhook contact point body (the same fields plus title,
// state, message, orgId and per alert dashboardURL, panelURL, silenceURL,
// valueString and values; https://grafana.com/docs/grafana/latest/alerting/configure-notifications/manage-contact-points/integrations/webhook-notifier/).
// Fields newer releases add are ignored.
//
// KV and Alerts offer the methods Alertmanager's own templates use
// (SortedPairs, Names, Values, Remove, Firing, Resolved), so a template
// written for Alertmanager's email notifier reads the same here.
package alertmail

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Notification is one webhook call: one alert group, one mail.
type Notification struct {
	Version           string `json:"version"`
	GroupKey          string `json:"groupKey"`
	TruncatedAlerts   int64  `json:"truncatedAlerts"`
	Status            string `json:"status"` // firing | resolved
	Receiver          string `json:"receiver"`
	GroupLabels       KV     `json:"groupLabels"`
	CommonLabels      KV     `json:"commonLabels"`
	CommonAnnotations KV     `json:"commonAnnotations"`
	ExternalURL       string `json:"externalURL"`
	Alerts            Alerts `json:"alerts"`

	// Grafana only.
	OrgID   int64  `json:"orgId"`
	Title   string `json:"title"`
	State   string `json:"state"`
	Message string `json:"message"`

	// Source is "alertmanager" or "grafana"; set by Parse, not read from
	// the body.
	Source string `json:"-"`
}

// Alert is one alert of a notification.
type Alert struct {
	Status       string    `json:"status"`
	Labels       KV        `json:"labels"`
	Annotations  KV        `json:"annotations"`
	StartsAt     time.Time `json:"startsAt"`
	EndsAt       time.Time `json:"endsAt"`
	GeneratorURL string    `json:"generatorURL"`
	Fingerprint  string    `json:"fingerprint"`

	// Grafana only. SilenceURL is filled from the Alertmanager's
	// externalURL when the sender gave none.
	SilenceURL   string             `json:"silenceURL"`
	DashboardURL string             `json:"dashboardURL"`
	PanelURL     string             `json:"panelURL"`
	ValueString  string             `json:"valueString"`
	Values       map[string]float64 `json:"values"`
	ImageURL     string             `json:"imageURL"`
}

// Resolved reports whether the alert has ended.
func (a Alert) Resolved() bool { return a.Status == "resolved" }

// Alerts is a notification's list of alerts.
type Alerts []Alert

// Firing returns the alerts still firing.
func (as Alerts) Firing() Alerts { return as.with("firing") }

// Resolved returns the alerts that have ended.
func (as Alerts) Resolved() Alerts { return as.with("resolved") }

func (as Alerts) with(status string) Alerts {
	out := Alerts{}
	for _, a := range as {
		if a.Status == status {
			out = append(out, a)
		}
	}
	return out
}

// KV is a set of labels or annotations.
type KV map[string]string

// Pair is one label or annotation.
type Pair struct{ Name, Value string }

// Pairs is a sorted list of labels.
type Pairs []Pair

// Names returns the names of the pairs, in order.
func (ps Pairs) Names() []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Name
	}
	return out
}

// Values returns the values of the pairs, in order.
func (ps Pairs) Values() []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Value
	}
	return out
}

// SortedPairs returns the entries sorted by name, alertname first, as
// Alertmanager does.
func (kv KV) SortedPairs() Pairs {
	ps := make(Pairs, 0, len(kv))
	for k, v := range kv {
		ps = append(ps, Pair{k, v})
	}
	sort.Slice(ps, func(i, j int) bool {
		if (ps[i].Name == "alertname") != (ps[j].Name == "alertname") {
			return ps[i].Name == "alertname"
		}
		return ps[i].Name < ps[j].Name
	})
	return ps
}

// Names returns the sorted names.
func (kv KV) Names() []string { return kv.SortedPairs().Names() }

// Values returns the values, sorted by name.
func (kv KV) Values() []string { return kv.SortedPairs().Values() }

// Remove returns a copy of kv without the given names.
func (kv KV) Remove(names []string) KV {
	out := KV{}
	for k, v := range kv {
		out[k] = v
	}
	for _, n := range names {
		delete(out, n)
	}
	return out
}

// Source names.
const (
	SourceAlertmanager = "alertmanager"
	SourceGrafana      = "grafana"
)

// maxAlerts bounds the alerts of one notification: more would not be
// read in one mail, and a body that big is a mistake or an attack.
const maxAlerts = 1000

// Parse reads a notification body from source.
func Parse(source string, body []byte) (*Notification, error) {
	var n Notification
	if err := json.Unmarshal(body, &n); err != nil {
		return nil, fmt.Errorf("not a %s webhook notification: %w", source, err)
	}
	n.Source = source
	switch {
	case n.Status != "firing" && n.Status != "resolved":
		return nil, fmt.Errorf("status must be \"firing\" or \"resolved\", got %q", n.Status)
	case len(n.Alerts) == 0:
		return nil, fmt.Errorf("alerts is empty")
	case len(n.Alerts) > maxAlerts:
		return nil, fmt.Errorf("%d alerts; at most %d in one notification", len(n.Alerts), maxAlerts)
	}
	if n.GroupKey == "" {
		// Threading needs some key; the group labels are what the
		// Alertmanager groups by.
		n.GroupKey = n.Receiver + ":" + fmt.Sprint(n.GroupLabels.SortedPairs())
	}
	base := strings.TrimRight(n.ExternalURL, "/")
	for i := range n.Alerts {
		a := &n.Alerts[i]
		if a.SilenceURL == "" && base != "" && source == SourceAlertmanager {
			a.SilenceURL = SilenceURL(base, a.Labels)
		}
	}
	return &n, nil
}

// SilenceURL is the Alertmanager UI's form for a new silence, filled with
// every label of the alert: "<externalURL>/#/silences/new?filter=" and the
// matchers {name="value", …} percent-encoded, the values quoted as JSON
// strings, as the UI itself writes them (ui/app/src/Views/SilenceForm/Parsing.elm).
func SilenceURL(externalURL string, labels KV) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, p := range labels.SortedPairs() {
		if i > 0 {
			b.WriteString(", ")
		}
		v, _ := json.Marshal(p.Value)
		b.WriteString(p.Name)
		b.WriteByte('=')
		b.Write(v)
	}
	b.WriteByte('}')
	// encodeURIComponent: QueryEscape escapes a superset, except that it
	// writes a space as "+", which a URL fragment does not decode.
	return strings.TrimRight(externalURL, "/") + "/#/silences/new?filter=" +
		strings.ReplaceAll(url.QueryEscape(b.String()), "+", "%20")
}
