package templates

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Funcs returns the functions every template may call, besides Go's own
// (and, or, not, eq, len, index, print, printf, urlquery, html, js, …):
//
//	upper, lower, title, trim        string case and white space
//	join SEP LIST                    a list of strings (or any values) joined
//	default DEFAULT VALUE            VALUE, or DEFAULT when VALUE is empty
//	required NAME VALUE              VALUE, or a render error naming NAME when empty
//	fail MESSAGE                     a render error
//	truncate N S                     S cut to N runes, with "…"
//	replace OLD NEW S                every OLD in S replaced
//	contains SUBSTR S, hasPrefix PREFIX S
//	sortedKeys MAP                   a map's keys, sorted
//	sortedLabels MAP                 a map's entries as {Name, Value}, sorted by name
//	toJSON VALUE                     VALUE as indented JSON
//	now                              the current time
//	since TIME                       the time since TIME, rounded ("5m", "2h10m")
//	timeFormat LAYOUT TIME           TIME in UTC with a Go layout
//	parseTime VALUE                  an RFC 3339 string or Unix seconds as a time
//	unixTime SECONDS                 Unix seconds as a time
//	humanizeDuration SECONDS         seconds as "1h2m3s"
//
// Functions that take a time accept a time.Time, an RFC 3339 string or Unix
// seconds, since that is how webhook bodies carry them.
func Funcs(now func() time.Time) map[string]any {
	return map[string]any{
		"upper":    strings.ToUpper,
		"lower":    strings.ToLower,
		"title":    title,
		"trim":     strings.TrimSpace,
		"join":     join,
		"default":  dflt,
		"required": required,
		"fail":     func(msg string) (string, error) { return "", errors.New(msg) },
		"truncate": truncate,
		"replace":  func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
		"contains": func(sub, s string) bool { return strings.Contains(s, sub) },
		"hasPrefix": func(prefix, s string) bool {
			return strings.HasPrefix(s, prefix)
		},
		"sortedKeys":   sortedKeys,
		"sortedLabels": sortedLabels,
		"toJSON":       toJSON,
		"now":          func() time.Time { return now().UTC() },
		"since": func(v any) (string, error) {
			t, err := asTime(v)
			if err != nil {
				return "", err
			}
			return roundDuration(now().Sub(t)), nil
		},
		"timeFormat": func(layout string, v any) (string, error) {
			t, err := asTime(v)
			if err != nil {
				return "", err
			}
			return t.UTC().Format(layout), nil
		},
		"parseTime": asTime,
		"unixTime": func(v any) (time.Time, error) {
			f, ok := asFloat(v)
			if !ok {
				return time.Time{}, fmt.Errorf("unixTime: %v is not a number", v)
			}
			return time.Unix(int64(f), 0).UTC(), nil
		},
		"humanizeDuration": func(v any) (string, error) {
			f, ok := asFloat(v)
			if !ok {
				return "", fmt.Errorf("humanizeDuration: %v is not a number", v)
			}
			return roundDuration(time.Duration(f * float64(time.Second))), nil
		},
	}
}

// Label is one entry of sortedLabels.
type Label struct{ Name, Value string }

func title(s string) string {
	prev := ' '
	return strings.Map(func(r rune) rune {
		up := unicode.IsSpace(prev) || prev == '-' || prev == '_'
		prev = r
		if up {
			return unicode.ToTitle(r)
		}
		return r
	}, s)
}

func join(sep string, list any) (string, error) {
	switch l := list.(type) {
	case nil:
		return "", nil
	case []string:
		return strings.Join(l, sep), nil
	}
	v := reflect.ValueOf(list)
	if v.Kind() != reflect.Slice && v.Kind() != reflect.Array {
		return "", fmt.Errorf("join: %T is not a list", list)
	}
	parts := make([]string, v.Len())
	for i := range parts {
		parts[i] = fmt.Sprint(v.Index(i).Interface())
	}
	return strings.Join(parts, sep), nil
}

func empty(v any) bool {
	if v == nil {
		return true
	}
	r := reflect.ValueOf(v)
	switch r.Kind() {
	case reflect.String, reflect.Slice, reflect.Map, reflect.Array:
		return r.Len() == 0
	case reflect.Pointer, reflect.Interface:
		return r.IsNil()
	}
	return false
}

func dflt(def, v any) any {
	if empty(v) {
		return def
	}
	return v
}

func required(name string, v any) (any, error) {
	if empty(v) {
		return nil, fmt.Errorf("%s is required", name)
	}
	return v, nil
}

func truncate(n int, v any) string {
	s := fmt.Sprint(v)
	if v == nil {
		s = ""
	}
	if n < 1 || utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func sortedKeys(m any) ([]string, error) {
	v := reflect.ValueOf(m)
	if m == nil {
		return nil, nil
	}
	if v.Kind() != reflect.Map || v.Type().Key().Kind() != reflect.String {
		return nil, fmt.Errorf("sortedKeys: %T is not a map with string keys", m)
	}
	keys := make([]string, 0, v.Len())
	for _, k := range v.MapKeys() {
		keys = append(keys, k.String())
	}
	sort.Strings(keys)
	return keys, nil
}

func sortedLabels(m any) ([]Label, error) {
	keys, err := sortedKeys(m)
	if err != nil {
		return nil, fmt.Errorf("sortedLabels: %T is not a map with string keys", m)
	}
	v := reflect.ValueOf(m)
	out := make([]Label, len(keys))
	for i, k := range keys {
		val := v.MapIndex(reflect.ValueOf(k).Convert(v.Type().Key()))
		s := ""
		if val.IsValid() && !(val.Kind() == reflect.Interface && val.IsNil()) {
			s = fmt.Sprint(val.Interface())
		}
		out[i] = Label{Name: k, Value: s}
	}
	return out, nil
}

func toJSON(v any) (string, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	return string(b), err
}

func asFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case string:
		f, err := strconv.ParseFloat(n, 64)
		return f, err == nil
	}
	return 0, false
}

func asTime(v any) (time.Time, error) {
	switch t := v.(type) {
	case time.Time:
		return t, nil
	case *time.Time:
		if t != nil {
			return *t, nil
		}
	case string:
		if p, err := time.Parse(time.RFC3339Nano, t); err == nil {
			return p, nil
		}
		// Zabbix and Uptime Kuma write "2006-01-02 15:04:05" (server
		// time, taken as UTC here).
		if p, err := time.Parse(time.DateTime, t); err == nil {
			return p, nil
		}
	}
	if f, ok := asFloat(v); ok {
		return time.Unix(int64(f), 0).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%v is not a time (RFC 3339 or Unix seconds)", v)
}

// roundDuration shows a duration the way a person reads it on a phone.
func roundDuration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	case d < 48*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	}
	days := int(d / (24 * time.Hour))
	return fmt.Sprintf("%dd%dh", days, int((d%(24*time.Hour))/time.Hour))
}
