//go:build !unix

package sendmail

import (
	"errors"
	"os"
)

// tryLock: the spool is for Unix hosts, where sendmail callers live.
func tryLock(*os.File) (bool, error) {
	return false, errors.New("the sendmail spool needs flock (a Unix host)")
}
