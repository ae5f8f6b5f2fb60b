// Package fault proves mailgate's delivery guarantees by breaking what it
// depends on, against real processes: the mailgate binary built from this
// checkout and run as a child process with a YAML configuration, a real
// redis-server (test/redistest) with the append-only file fsynced on every
// write, and the Exchange Online simulator (test/exosim) reached through a
// TCP forwarder of this package that can refuse connections, cut the ones
// open and add latency.
//
// Each test breaks one thing — Redis restarted under submissions, mailgate
// killed with SIGKILL mid-batch, the SMTP server unreachable, a SIGTERM
// during delivery, Redis gone under the workers — and then counts, message by
// message: what the API answered, what the simulator received (by
// Message-ID, which mailgate makes <id@from-domain>), and what the status API
// says. The figures are logged in one line per test, "fault: …", for the
// release notes.
//
// When the tests run with -race, the mailgate binary is built with -race too,
// and a data race reported by a child process fails the test.
package fault

import (
	"os"
	"testing"

	"github.com/mailgate/mailgate/test/testbin"
)

// mailgateBin is the binary under test, built once by TestMain.
var mailgateBin string

func TestMain(m *testing.M) {
	os.Exit(testbin.RunWithMailgate(m, "fault", func(bin, _ string) error {
		mailgateBin = bin
		return nil
	}))
}
