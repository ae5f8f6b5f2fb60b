// Package testbin finds the real programs that tests use as peers and
// clients (swaks, postfix, promtool, alertmanager, ...). A missing program
// fails the test with the Debian package to install: tests never skip
// silently because a server or client is absent. `make deps`
// (test/ensure-deps.sh) installs all of them.
package testbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Path returns the path of the program name, looked up in PATH and then in
// /usr/sbin and /usr/lib/postfix/sbin (where Debian puts postfix's tools,
// often outside a non-root PATH). It fails the test, naming pkg, when the
// program is not installed.
func Path(t testing.TB, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/lib/postfix/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Fatalf("%s is not installed: install the Debian package %s (`make deps` installs everything the tests need)", name, pkg)
	return ""
}
