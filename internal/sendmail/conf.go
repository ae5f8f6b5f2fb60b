package sendmail

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
)

// DefaultConfPath is read when --config is not given.
const DefaultConfPath = "/etc/mailgate/sendmail.conf"

// Conf is sendmail.conf, with the environment applied.
type Conf struct {
	URL         string              // the mailgate server, e.g. https://mailgate.contoso.com
	Token       string              // the app token, or
	TokenFile   string              // a file holding it
	SpoolDir    string              // where messages wait while the server is away; "" = no spool
	LocalDomain string              // qualifies local names: root → root@LocalDomain
	Aliases     map[string][]string // local name → addresses, before LocalDomain
}

// ConfError is a sendmail.conf that cannot be used; it exits EX_CONFIG.
type ConfError struct{ Msg string }

func (e *ConfError) Error() string { return e.Msg }

func confErrorf(format string, args ...any) error {
	return &ConfError{fmt.Sprintf(format, args...)}
}

// LoadConf reads the file at path and then applies MAILGATE_URL,
// MAILGATE_TOKEN and MAILGATE_TOKEN_FILE from getenv, which win. A missing
// file is an error only when explicit (given with --config): a host may be
// configured by the environment alone.
//
// The format is one "key = value" per line; blank lines and lines starting
// with # are ignored. Keys: url, token, token_file, spool_dir,
// local_domain, and "alias NAME = address[, address...]".
func LoadConf(path string, explicit bool, getenv func(string) string) (Conf, error) {
	var c Conf
	f, err := os.Open(path)
	switch {
	case err == nil:
		defer f.Close()
		if err := c.parse(path, bufio.NewScanner(f)); err != nil {
			return c, err
		}
	case explicit || !errors.Is(err, fs.ErrNotExist):
		return c, confErrorf("read %s: %v", path, err)
	}
	if v := getenv("MAILGATE_URL"); v != "" {
		c.URL = v
	}
	if v := getenv("MAILGATE_TOKEN_FILE"); v != "" {
		c.TokenFile, c.Token = v, ""
	}
	if v := getenv("MAILGATE_TOKEN"); v != "" {
		c.Token, c.TokenFile = v, ""
	}
	return c, c.validate(path)
}

func (c *Conf) parse(path string, sc *bufio.Scanner) error {
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return confErrorf("%s:%d: want key = value", path, n)
		}
		key, val = strings.Join(strings.Fields(key), " "), unquote(strings.TrimSpace(val))
		switch key {
		case "url":
			c.URL = val
		case "token":
			c.Token = val
		case "token_file":
			c.TokenFile = val
		case "spool_dir":
			c.SpoolDir = val
		case "local_domain":
			c.LocalDomain = strings.TrimPrefix(val, "@")
		default:
			name, ok := strings.CutPrefix(key, "alias ")
			if !ok || strings.ContainsAny(name, " @") {
				return confErrorf("%s:%d: unknown key %q (known: url, token, token_file, spool_dir, local_domain, alias NAME)", path, n, key)
			}
			var addrs []string
			for _, a := range strings.Split(val, ",") {
				if a = strings.TrimSpace(a); a != "" {
					addrs = append(addrs, a)
				}
			}
			if len(addrs) == 0 {
				return confErrorf("%s:%d: alias %s has no address", path, n, name)
			}
			if c.Aliases == nil {
				c.Aliases = map[string][]string{}
			}
			c.Aliases[strings.ToLower(name)] = addrs
		}
	}
	if err := sc.Err(); err != nil {
		return confErrorf("read %s: %v", path, err)
	}
	return nil
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
		return s[1 : len(s)-1]
	}
	return s
}

func (c *Conf) validate(path string) error {
	if c.URL == "" {
		return confErrorf("no server: set url in %s or MAILGATE_URL", path)
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return confErrorf("url %q is not an http:// or https:// URL", c.URL)
	}
	if c.Token != "" && c.TokenFile != "" {
		return confErrorf("%s sets both token and token_file; keep one", path)
	}
	if strings.Contains(c.LocalDomain, "@") {
		return confErrorf("local_domain %q must be a domain", c.LocalDomain)
	}
	return nil
}

// AppToken returns the token, reading token_file when that is how it is
// given.
func (c Conf) AppToken() (string, error) {
	if c.Token != "" {
		return c.Token, nil
	}
	if c.TokenFile == "" {
		return "", confErrorf("no token: set token or token_file in sendmail.conf, or MAILGATE_TOKEN or MAILGATE_TOKEN_FILE")
	}
	b, err := os.ReadFile(c.TokenFile)
	if err != nil {
		return "", confErrorf("read token_file: %v", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", confErrorf("token_file %s is empty", c.TokenFile)
	}
	return t, nil
}

// NoUserError is a local name without a mapping; it exits EX_NOUSER.
type NoUserError struct{ Name string }

func (e *NoUserError) Error() string {
	return fmt.Sprintf("%q has no domain and no alias: set local_domain, or \"alias %s = address\", in sendmail.conf", e.Name, e.Name)
}

// Qualify maps a recipient to addresses: an address with a domain is kept,
// a local name (root) becomes its alias or name@local_domain.
func (c Conf) Qualify(name string) ([]string, error) {
	if strings.Contains(name, "@") {
		return []string{name}, nil
	}
	if addrs, ok := c.Aliases[strings.ToLower(name)]; ok {
		out := make([]string, 0, len(addrs))
		for _, a := range addrs {
			if !strings.Contains(a, "@") {
				if c.LocalDomain == "" {
					return nil, &NoUserError{a}
				}
				a += "@" + c.LocalDomain
			}
			out = append(out, a)
		}
		return out, nil
	}
	if c.LocalDomain == "" {
		return nil, &NoUserError{name}
	}
	return []string{name + "@" + c.LocalDomain}, nil
}
