package limits

// Windows and caps the tests check against.
const (
	RecipientWindow = recipientWindow
	MessageWindow   = messageWindow
	MaxConnWait     = maxConnWait
)
