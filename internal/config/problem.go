package config

import "strings"

// Problem is one thing wrong with a configuration. Key names the exact place
// in the file, in the form a user can find it: routes[m365].auth.username,
// apps[monitoring].from.allowed[1], or routes[0].port when the route has no
// name yet. Problems found while reading the file itself (its syntax) use the
// file's path as Key.
type Problem struct {
	Key     string
	Message string
}

// String formats p as `mailgate config check` prints it: "KEY: MESSAGE".
func (p Problem) String() string {
	if p.Key == "" {
		return p.Message
	}
	return p.Key + ": " + p.Message
}

// Problems is the error Load returns: every problem found, not just the first,
// so one run of config check shows everything to fix. Use errors.As with a
// *Problems to get at the list.
type Problems []Problem

// Error lists the problems, one per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}
