package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Loading happens in this order, and each step reports every problem it finds
// instead of stopping at the first:
//
//  1. The file is parsed into a yaml.Node tree, not straight into Config.
//  2. The tree is walked against the Config type. The walk expands ${NAME} in
//     string scalars, refuses unknown keys and checks each scalar against
//     the Go type it will land in, so every problem is reported with its full
//     key (routes[m365].tls.mode) rather than yaml's "line 12: field mod not
//     found in type config.RouteTLS". This walk takes the place of yaml's
//     Decoder.KnownFields(true), which yaml.Node.Decode does not offer.
//  3. The tree is decoded into Config.
//  4. *_file secrets are read.
//  5. Defaults are applied, then Validate runs.
//
// Expanding on the tree rather than on the text of the file is what keeps an
// environment variable from injecting YAML: a value containing "\n  - name:"
// or "{a: b}" stays one string scalar.

// Load reads, expands, defaults and validates the configuration file at path.
// getenv supplies ${NAME} values (os.Getenv when nil). When anything is wrong,
// the error is a Problems listing all of it.
func Load(path string, getenv func(string) string) (*Config, error) {
	c, problems := load(path, getenv)
	if len(problems) > 0 {
		return nil, Problems(problems)
	}
	return c, nil
}

// Check runs what Load runs and returns every problem, for
// `mailgate config check`; nil means the file is fine.
func Check(path string, getenv func(string) string) []Problem {
	problems, _ := CheckWarnings(path, getenv)
	return problems
}

// CheckWarnings is Check that also returns the risky settings the file
// accepts on purpose (Config.Warnings), listed only when there are no
// problems.
func CheckWarnings(path string, getenv func(string) string) (problems, warnings []Problem) {
	c, problems := load(path, getenv)
	if len(problems) == 0 && c != nil {
		warnings = c.Warnings()
	}
	return problems, warnings
}

func load(path string, getenv func(string) string) (*Config, []Problem) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, []Problem{{Key: path, Message: "cannot read the configuration file: " + err.Error()}}
	}
	return parse(path, data, getenv)
}

// parse is Load on bytes; name stands for the file in problems about the
// file as a whole.
func parse(name string, data []byte, getenv func(string) string) (*Config, []Problem) {
	if getenv == nil {
		getenv = os.Getenv
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, []Problem{{Key: name, Message: "the file is empty"}}
		}
		return nil, []Problem{{Key: name, Message: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, []Problem{{Key: name, Message: "holds more than one YAML document (---); mailgate reads exactly one"}}
	}

	l := &loader{name: name, getenv: getenv, expanded: map[*yaml.Node]error{}}
	root := doc.Content[0]
	l.walk(root, reflect.TypeFor[Config](), "")

	var c Config
	if err := root.Decode(&c); err != nil && len(l.problems) == 0 {
		// The walk checks every scalar it decodes, so this is only a
		// safety net for a case it does not know about.
		l.add("", "%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	problems := append(l.problems, c.readSecretFiles()...)
	problems = append(problems, c.readTemplateFiles()...)
	c.WithDefaults()

	// A value that could not be read already has a problem; the
	// complaints Validate makes about the empty value left in its place
	// would only repeat it.
	for _, p := range c.Validate() {
		if !coveredBy(p.Key, problems) {
			problems = append(problems, p)
		}
	}
	return &c, problems
}

// coveredBy reports whether a problem at key (or at a key it is part of)
// is already among problems. A problem with foo_file covers foo.
func coveredBy(key string, problems []Problem) bool {
	for _, p := range problems {
		for _, k := range []string{p.Key, strings.TrimSuffix(p.Key, "_file")} {
			if key == k || strings.HasPrefix(key, k+".") || strings.HasPrefix(key, k+"[") {
				return true
			}
		}
	}
	return false
}

type loader struct {
	name     string
	getenv   func(string) string
	problems []Problem
	// expanded remembers the scalars already expanded (and their error),
	// because an alias reaches its anchor's node a second time and "$$"
	// must not be unescaped twice.
	expanded map[*yaml.Node]error
}

func (l *loader) add(key, format string, args ...any) {
	if key == "" {
		key = l.name
	}
	l.problems = append(l.problems, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
}

var durationType = reflect.TypeFor[time.Duration]()

// walk checks n against the Go type t it will be decoded into; key is n's
// place in the file.
func (l *loader) walk(n *yaml.Node, t reflect.Type, key string) {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return
		}
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // an empty value leaves the zero value, which is fine for any type
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			l.add(key, "want a mapping of keys, found %s (line %d)", describeNode(n), n.Line)
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
				l.walkMerge(v, t, key)
				continue
			}
			if k.Kind != yaml.ScalarNode {
				l.add(key, "keys must be plain names, found %s (line %d)", describeNode(k), k.Line)
				continue
			}
			f, ok := fields[k.Value]
			if !ok {
				l.add(joinKey(key, k.Value), "unknown key (line %d)%s", k.Line, suggest(k.Value, fields))
				continue
			}
			l.walk(v, f.Type, joinKey(key, k.Value))
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			l.add(key, "want a list, found %s (line %d)", describeNode(n), n.Line)
			return
		}
		label := labelField(t.Elem())
		for i, e := range n.Content {
			l.walk(e, t.Elem(), fmt.Sprintf("%s[%s]", key, l.label(e, label, i)))
		}
	default:
		if n.Kind != yaml.ScalarNode {
			l.add(key, "want a single value, found %s (line %d)", describeNode(n), n.Line)
			return
		}
		if err := l.expand(n, t); err != nil {
			l.add(key, "%v", err)
			return
		}
		if t.Kind() == reflect.String {
			return // any scalar decodes into a string as written
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			l.add(key, "%s, got %q (line %d)", wantType(t), n.Value, n.Line)
		}
	}
}

// walkMerge walks the value of a "<<" merge key: a mapping, an alias of one,
// or a list of those.
func (l *loader) walkMerge(v *yaml.Node, t reflect.Type, key string) {
	if v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	if v.Kind == yaml.SequenceNode {
		for _, e := range v.Content {
			l.walk(e, t, key)
		}
		return
	}
	l.walk(v, t, key)
}

// expand replaces ${NAME} in the string scalar n, once. A scalar that lands
// in a number, a bool or a duration is re-resolved after expansion, so that
// `port: ${SMTP_PORT}` works; one that lands in a string keeps its !!str tag,
// so a variable holding "~" or "123" stays that text.
func (l *loader) expand(n *yaml.Node, t reflect.Type) error {
	if err, done := l.expanded[n]; done {
		return err
	}
	var err error
	if n.ShortTag() == "!!str" && strings.Contains(n.Value, "$") {
		var v string
		v, err = expandVars(n.Value, l.getenv)
		if err != nil {
			v = "" // leave the zero value; the problem is reported once, here
		}
		n.Value = v
		if t.Kind() != reflect.String {
			n.Tag, n.Style = "", 0
		}
	}
	l.expanded[n] = err
	return err
}

// label names element i of a list in problem keys: by its name or id when it
// has one (routes[m365], apps[monitoring]), by index otherwise.
func (l *loader) label(e *yaml.Node, field string, i int) string {
	if e.Kind == yaml.AliasNode && e.Alias != nil {
		e = e.Alias
	}
	if field != "" && e.Kind == yaml.MappingNode {
		for j := 0; j+1 < len(e.Content); j += 2 {
			k, v := e.Content[j], e.Content[j+1]
			if k.Value != field || v.Kind != yaml.ScalarNode {
				continue
			}
			if l.expand(v, reflect.TypeFor[string]()) == nil && v.Value != "" {
				return v.Value
			}
		}
	}
	return fmt.Sprint(i)
}

// expandVars replaces ${NAME} with getenv(NAME) and $$ with $. A "$" followed
// by anything else stays as it is, so that a password like "pa$word" needs
// no escaping. Every unset variable of s is named in one error.
func expandVars(s string, getenv func(string) string) (string, error) {
	var b strings.Builder
	var missing []string
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", errors.New(`"${" without a closing "}" (write $$ for a literal $)`)
			}
			name := s[i+2 : i+2+end]
			if !isVarName(name) {
				return "", fmt.Errorf("%q is not a valid environment variable name (want letters, digits and _, not starting with a digit; write $$ for a literal $)", name)
			}
			v := getenv(name)
			if v == "" {
				missing = append(missing, name)
			}
			b.WriteString(v)
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	switch len(missing) {
	case 0:
		return b.String(), nil
	case 1:
		return "", fmt.Errorf("environment variable %s is not set (or is empty)", missing[0])
	}
	return "", fmt.Errorf("environment variables %s are not set (or are empty)", strings.Join(missing, ", "))
}

func isVarName(s string) bool {
	if s == "" || '0' <= s[0] && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || isAlnum(c)) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// yamlFields maps the yaml key of each field of struct type t to the field.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	fields := make(map[string]reflect.StructField, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name) // yaml.v3's rule for untagged fields
		}
		fields[name] = f
	}
	return fields
}

// labelField is the key that names an element of a list of t: "name" for
// routes, "id" for apps, "" for lists of plain values.
func labelField(t reflect.Type) string {
	if t.Kind() != reflect.Struct {
		return ""
	}
	fields := yamlFields(t)
	for _, k := range []string{"name", "id"} {
		if f, ok := fields[k]; ok && f.Type.Kind() == reflect.String {
			return k
		}
	}
	return ""
}

func joinKey(parent, k string) string {
	if parent == "" {
		return k
	}
	return parent + "." + k
}

func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func wantType(t reflect.Type) string {
	switch {
	case t == durationType:
		return "want a duration such as 30s, 5m or 24h"
	case t.Kind() == reflect.Bool:
		return "want true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "want a whole number"
	}
	return "want a " + t.String()
}

// suggest offers the known key closest to an unknown one, for typos such as
// send-as or tls.mod.
func suggest(unknown string, fields map[string]reflect.StructField) string {
	norm := strings.ToLower(strings.ReplaceAll(unknown, "-", "_"))
	best, bestDist := "", 3
	for k := range fields {
		if k == norm {
			return fmt.Sprintf("; did you mean %q?", k)
		}
		if d := editDistance(norm, k); d < bestDist || d == bestDist && k < best {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// readSecretFiles fills each secret given as *_file from its file, trimming
// the trailing newline (and other trailing white space) editors and
// `echo` leave there. Relative paths are relative to the working directory,
// like every other path in the file.
func (c *Config) readSecretFiles() []Problem {
	type secret struct {
		key, fileKey string
		value        *string
		file         string
	}
	secrets := []secret{
		{"redis.url", "redis.url_file", &c.Redis.URL, c.Redis.URLFile},
		{"redis.sentinel.url", "redis.sentinel.url_file", &c.Redis.Sentinel.URL, c.Redis.Sentinel.URLFile},
		{"redis.sentinel.password", "redis.sentinel.password_file", &c.Redis.Sentinel.Password, c.Redis.Sentinel.PasswordFile},
		{"redis.sentinel.sentinel_password", "redis.sentinel.sentinel_password_file", &c.Redis.Sentinel.SentinelPassword, c.Redis.Sentinel.SentinelPasswordFile},
		{"redis.cluster.url", "redis.cluster.url_file", &c.Redis.Cluster.URL, c.Redis.Cluster.URLFile},
		{"redis.cluster.password", "redis.cluster.password_file", &c.Redis.Cluster.Password, c.Redis.Cluster.PasswordFile},
		{"auth.signing_key", "auth.signing_key_file", &c.Auth.SigningKey, c.Auth.SigningKeyFile},
		{"metrics.token", "metrics.token_file", &c.Metrics.Token, c.Metrics.TokenFile},
	}
	for i := range c.Apps {
		a := &c.Apps[i]
		k := appKey(i, a) + ".webhooks"
		secrets = append(secrets, secret{k + ".grafana_secret", k + ".grafana_secret_file", &a.Webhooks.GrafanaSecret, a.Webhooks.GrafanaSecretFile})
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		k := routeKey(i, r)
		secrets = append(secrets,
			secret{k + ".auth.password", k + ".auth.password_file", &r.Auth.Password, r.Auth.PasswordFile},
			secret{k + ".auth.oauth.client_secret", k + ".auth.oauth.client_secret_file", &r.Auth.OAuth.ClientSecret, r.Auth.OAuth.ClientSecretFile},
		)
	}
	var problems []Problem
	// Previous signing keys are a list: each file holds one key, added to
	// those given inline.
	for i, f := range c.Auth.PreviousSigningKeysFile {
		data, err := os.ReadFile(f)
		key := fmt.Sprintf("auth.previous_signing_keys_file[%d]", i)
		switch v := strings.TrimRight(string(data), " \t\r\n"); {
		case err != nil:
			problems = append(problems, Problem{Key: key, Message: fmt.Sprintf("cannot read the secret: %v", err)})
		case v == "":
			problems = append(problems, Problem{Key: key, Message: fmt.Sprintf("%s is empty", f)})
		default:
			c.Auth.PreviousSigningKeys = append(c.Auth.PreviousSigningKeys, v)
		}
	}
	for _, s := range secrets {
		if s.file == "" {
			continue
		}
		if *s.value != "" {
			problems = append(problems, Problem{Key: s.key, Message: fmt.Sprintf("both %s and %s are set; use one", s.key, s.fileKey)})
			continue
		}
		data, err := os.ReadFile(s.file)
		if err != nil {
			problems = append(problems, Problem{Key: s.fileKey, Message: fmt.Sprintf("cannot read the secret: %v", err)})
			continue
		}
		v := strings.TrimRight(string(data), " \t\r\n")
		if v == "" {
			problems = append(problems, Problem{Key: s.fileKey, Message: fmt.Sprintf("%s is empty", s.file)})
			continue
		}
		*s.value = v
	}
	return problems
}
