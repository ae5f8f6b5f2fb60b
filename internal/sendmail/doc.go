// Package sendmail is mailgate's sendmail-compatible command: the door for
// every Unix program that hands mail to /usr/sbin/sendmail (cron, mail(1),
// logwatch, smartd, mdadm, PHP's mail()). It reads a message on stdin,
// qualifies local names such as "root" with a configured domain or alias,
// and submits the bytes to a mailgate server's POST /v1/messages/raw with
// an app token, so the server applies the same From and recipient policy,
// the same queue and the same delivery as for any other submission.
//
// Callers only look at the exit status, with the meanings of sysexits.h
// (0 only after the server's 202). cron throws a message away when sendmail
// fails, so when a spool directory is configured a message the server could
// not take for a temporary reason (network error, 5xx, 429) is written there
// durably and the command exits 0; Flush, run from a timer, re-sends it with
// the same Idempotency-Key, which the server honours for 24 hours, so a
// spooled message is stored once even when an earlier answer was lost.
//
// Options are parsed the way sendmail's getopt does (clustered and glued
// forms, -oX options, permuted recipients as with glibc), accepting and
// ignoring what has no meaning for a submission (-B8BITMIME, -odi, -oem).
// -bs, the default of Symfony Mailer and Laravel, speaks SMTP on stdin and
// stdout through go-smtp's server, each message taking the same path.
// Sources: sendmail(8) of Sendmail 8 and Postfix, sysexits.h.
package sendmail

// Exit codes from sysexits.h, the statuses sendmail callers understand.
const (
	ExitOK       = 0
	ExitUsage    = 64 // EX_USAGE: bad options
	ExitDataErr  = 65 // EX_DATAERR: the message was refused as invalid
	ExitNoUser   = 67 // EX_NOUSER: a local name with no mapping
	ExitSoftware = 70 // EX_SOFTWARE: internal error
	ExitIOErr    = 74 // EX_IOERR: reading stdin or writing the spool failed
	ExitTempFail = 75 // EX_TEMPFAIL: try again later
	ExitNoPerm   = 77 // EX_NOPERM: token refused, or the policy refused the message
	ExitConfig   = 78 // EX_CONFIG: sendmail.conf is missing or wrong
)
