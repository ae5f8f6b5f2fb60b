package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BuildMailgate compiles ./cmd/mailgate of the module the test runs in into
// dir and returns the binary's path. A test binary built with -race gets a
// -race mailgate, so the real process is checked for races too. It is meant
// for TestMain, once per package: it fails with an error, not a test.
func BuildMailgate(dir string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module (go env GOMOD = %q)", gomod)
	}
	bin := filepath.Join(dir, "mailgate")
	args := []string{"build", "-o", bin}
	if Race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/mailgate")...)
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/mailgate: %w\n%s", err, out)
	}
	return bin, nil
}

// RunWithMailgate is the body of a TestMain whose tests run the real binary:
// it builds mailgate into a temporary directory, calls ready with the
// binary's path and that directory (for links or files beside it), runs
// the tests and removes the directory. It returns the exit code for
// os.Exit; name (one word: the directory is named after it) prefixes its
// messages.
func RunWithMailgate(m interface{ Run() int }, name string, ready func(bin, dir string) error) int {
	dir, err := os.MkdirTemp("", "mailgate-"+name+"-")
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		return 1
	}
	defer func() {
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintln(os.Stderr, name+": remove the built binary:", err)
		}
	}()
	bin, err := BuildMailgate(dir)
	if err == nil {
		err = ready(bin, dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		return 1
	}
	return m.Run()
}
