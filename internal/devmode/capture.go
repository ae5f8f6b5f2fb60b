package devmode

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-smtp"
)

// Capture is a local SMTP server that accepts everything and writes each
// message, byte for byte as received, to an .eml file.
type Capture struct {
	dir string
	log *slog.Logger
	n   atomic.Int64
	now func() time.Time
}

// NewSession implements smtp.Backend.
func (c *Capture) NewSession(*smtp.Conn) (smtp.Session, error) { return &captureSession{c: c}, nil }

type captureSession struct {
	c    *Capture
	from string
	to   []string
}

func (s *captureSession) Reset()        { s.from, s.to = "", nil }
func (s *captureSession) Logout() error { return nil }
func (s *captureSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *captureSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *captureSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	n := s.c.n.Add(1)
	name := fmt.Sprintf("%s-%04d.eml", s.c.now().UTC().Format("20060102T150405.000Z"), n)
	path := filepath.Join(s.c.dir, name)
	// Written under a temporary name and renamed, so a reader never sees half a file.
	tmp := path + ".part"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "cannot write the outbox"}
	}
	if err := os.Rename(tmp, path); err != nil {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "cannot write the outbox"}
	}
	subject := ""
	if mr, err := mail.CreateReader(bytes.NewReader(b)); err == nil {
		subject, _ = mr.Header.Subject()
	}
	s.c.log.Info("captured", "from", s.from, "to", strings.Join(s.to, ","), "subject", subject, "file", path)
	return nil
}
