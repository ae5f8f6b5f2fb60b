package sendmail

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Spool is a directory of messages the server could not take yet.
//
// Each message is one file, <key>.msg: a line of JSON (Entry) and the
// message bytes. It is written to a temporary file, fsynced, renamed into
// place and the directory fsynced, so after a crash a message is either
// wholly in the spool or not there at all, and a flush never sees half a
// file. Flush holds an exclusive flock on <dir>/.lock, so two flushes never
// send the same file; the Idempotency-Key covers the rest (an answer lost
// after the server stored the message). Messages refused for good move to
// failed/ with a .reason file next to them.
type Spool struct {
	Dir string
	Now func() time.Time
}

// Entry is what a spooled message carries besides its bytes.
type Entry struct {
	Key       string    `json:"idempotency_key"`
	To        []string  `json:"to,omitempty"`
	SpooledAt time.Time `json:"spooled_at"`
	Reason    string    `json:"reason"` // why it was spooled
}

const spoolExt = ".msg"

// FailedDir is where Flush moves messages the server refused for good.
const FailedDir = "failed"

// Put stores a message durably and returns its file name.
func (s Spool) Put(e Entry, msg []byte) (string, error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	e.SpooledAt = s.Now().UTC()
	meta, err := json.Marshal(e)
	if err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	final := filepath.Join(s.Dir, e.Key+spoolExt)
	if err := writeDurably(s.Dir, final, append(append(meta, '\n'), msg...)); err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	return final, nil
}

// writeDurably writes data to path through a temporary file in dir, so the
// file appears whole or not at all, also after a power failure.
func writeDurably(dir, path string, data []byte) error {
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ErrFlushRunning says another flush holds the spool.
var ErrFlushRunning = errors.New("another flush is running")

// FlushReport counts what a flush did.
type FlushReport struct {
	Sent, Failed, Kept int
}

// SendFunc submits one spooled message.
type SendFunc func(ctx context.Context, e Entry, msg []byte) Result

// Flush sends every spooled message, oldest first: a 202 deletes it, a
// permanent refusal moves it to failed/, a temporary failure keeps it and
// ends the flush (the server is away or busy; the next run retries).
// report is called once per message that was not sent.
func (s Spool) Flush(ctx context.Context, send SendFunc, report func(file, outcome string)) (FlushReport, error) {
	var r FlushReport
	if _, err := os.Stat(s.Dir); errors.Is(err, fs.ErrNotExist) {
		return r, nil // nothing was ever spooled
	}
	lock, err := os.OpenFile(filepath.Join(s.Dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return r, fmt.Errorf("spool: %w", err)
	}
	defer lock.Close() // closing releases the lock
	if held, err := tryLock(lock); err != nil {
		return r, fmt.Errorf("spool: lock: %w", err)
	} else if !held {
		return r, ErrFlushRunning
	}

	files, err := s.list()
	if err != nil {
		return r, err
	}
	for i, name := range files {
		path := filepath.Join(s.Dir, name)
		e, msg, err := readEntry(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // taken by a flush that ran before this one got the lock
		}
		if err != nil {
			r.Failed++
			report(name, "unreadable, moved to failed/: "+err.Error())
			if err := s.fail(name, err.Error()); err != nil {
				return r, err
			}
			continue
		}
		res := send(ctx, e, msg)
		code, temporary := res.Exit()
		switch {
		case code == ExitOK:
			if err := os.Remove(path); err != nil {
				return r, fmt.Errorf("spool: sent %s (id %s) but could not remove it: %w", name, res.ID, err)
			}
			r.Sent++
		case temporary:
			r.Kept = len(files) - i
			report(name, "kept: "+res.Reason)
			return r, syncDir(s.Dir)
		default:
			r.Failed++
			report(name, "refused, moved to failed/: "+res.Reason)
			if err := s.fail(name, res.Reason); err != nil {
				return r, err
			}
		}
	}
	return r, syncDir(s.Dir)
}

// staleTemp is the age after which a temporary file is an abandoned write;
// a live one exists for milliseconds.
const staleTemp = time.Hour

// list returns the spooled files, oldest first, and removes abandoned
// temporary files.
func (s Spool) list() ([]string, error) {
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	type file struct {
		name string
		mod  time.Time
	}
	var files []file
	for _, de := range ents {
		if !de.Type().IsRegular() {
			continue
		}
		info, err := de.Info()
		if err != nil {
			continue // gone since ReadDir
		}
		if strings.HasPrefix(de.Name(), ".tmp-") && s.Now().Sub(info.ModTime()) > staleTemp {
			// Left by a sendmail that died between writing and renaming:
			// its caller saw no exit 0, so the message was never promised.
			_ = os.Remove(filepath.Join(s.Dir, de.Name()))
			continue
		}
		if !strings.HasSuffix(de.Name(), spoolExt) || strings.HasPrefix(de.Name(), ".") {
			continue
		}
		files = append(files, file{de.Name(), info.ModTime()})
	}
	sort.Slice(files, func(i, j int) bool {
		if !files[i].mod.Equal(files[j].mod) {
			return files[i].mod.Before(files[j].mod)
		}
		return files[i].name < files[j].name
	})
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.name
	}
	return out, nil
}

// List returns the spooled messages, oldest first, for -bp.
func (s Spool) List() ([]Entry, error) {
	if _, err := os.Stat(s.Dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	names, err := s.list()
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, n := range names {
		e, _, err := readEntry(filepath.Join(s.Dir, n))
		if err == nil {
			out = append(out, e)
		}
	}
	return out, nil
}

func readEntry(path string) (Entry, []byte, error) {
	var e Entry
	b, err := os.ReadFile(path)
	if err != nil {
		return e, nil, err
	}
	meta, msg, ok := bytes.Cut(b, []byte("\n"))
	if !ok {
		return e, nil, errors.New("no message after the entry line")
	}
	if err := json.Unmarshal(meta, &e); err != nil || e.Key == "" {
		return e, nil, fmt.Errorf("bad entry line: %v", err)
	}
	return e, msg, nil
}

// fail moves a spooled file to failed/ with the reason beside it.
func (s Spool) fail(name, reason string) error {
	dir := filepath.Join(s.Dir, FailedDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	base := strings.TrimSuffix(name, spoolExt)
	line := s.Now().UTC().Format(time.RFC3339) + " " + oneLine(reason) + "\n"
	if err := writeDurably(dir, filepath.Join(dir, base+".reason"), []byte(line)); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := os.Rename(filepath.Join(s.Dir, name), filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return syncDir(dir)
}
