// Package sendmail tests `mailgate sendmail` as Unix programs use it: the
// real binary, started with each caller's exact argument list (and through
// a real bsd-mailx), submitting to a real mailgate with a real Redis, which
// delivers over real SMTP to the Exchange Online simulator.
package sendmail

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mailgate/mailgate/test/testbin"
)

// mailgateBin is the binary under test and sendmailLink a symlink to it
// named sendmail, both made once by TestMain.
var mailgateBin, sendmailLink string

func TestMain(m *testing.M) {
	os.Exit(testbin.RunWithMailgate(m, "sendmail", func(bin, dir string) error {
		mailgateBin = bin
		sendmailLink = filepath.Join(dir, "sbin", "sendmail")
		if err := os.Mkdir(filepath.Dir(sendmailLink), 0o755); err != nil {
			return err
		}
		return os.Symlink(mailgateBin, sendmailLink)
	}))
}
