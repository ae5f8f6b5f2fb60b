// Package sendmail tests `mailgate sendmail` as Unix programs use it: the
// real binary, started with each caller's exact argument list (and through
// a real bsd-mailx), submitting to a real mailgate with a real Redis, which
// delivers over real SMTP to the Exchange Online simulator.
package sendmail

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// mailgateBin is the binary under test and sendmailLink a symlink to it
// named sendmail, both made once by TestMain.
var mailgateBin, sendmailLink string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mailgate-sendmail-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "sendmail test:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "sendmail test:", err)
		return 1
	}
	return m.Run()
}

// build compiles ./cmd/mailgate of the module this package belongs to.
func build(dir string) error {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return fmt.Errorf("not inside a Go module (go env GOMOD = %q)", gomod)
	}
	mailgateBin = filepath.Join(dir, "mailgate")
	args := []string{"build", "-o", mailgateBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/mailgate")...)
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/mailgate: %w\n%s", err, out)
	}
	sendmailLink = filepath.Join(dir, "sbin", "sendmail")
	if err := os.Mkdir(filepath.Dir(sendmailLink), 0o755); err != nil {
		return err
	}
	return os.Symlink(mailgateBin, sendmailLink)
}
