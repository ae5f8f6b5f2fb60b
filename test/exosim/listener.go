package exosim

import (
	"fmt"
	"net"
	"sync"
)

// listener counts and tracks every accepted connection, so that Stats can
// report open connections (the leak check) and Close can end them all. It
// also applies scripted StageConnect replies, which go-smtp has no hook for:
// it writes the reply and closes the connection before go-smtp sees it.
type listener struct {
	net.Listener
	sim *Sim
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc := l.sim.track(c)
		r, ok := l.sim.script.next(StageConnect)
		if !ok || r.success() {
			return tc, nil
		}
		if r.Drop {
			l.sim.countDrop()
		} else {
			e := r.err()
			l.sim.refuse(e)
			// A 4xx/5xx greeting, then the server hangs up (RFC 5321 3.1).
			fmt.Fprintf(tc, "%d %s %s\r\n", e.Code, enhancedString(e.Code, e.EnhancedCode), e.Message)
		}
		tc.Close()
	}
}

// trackedConn reports its first Close to the Sim; tls.Conn.Close and
// go-smtp's Conn.Close both end here.
type trackedConn struct {
	net.Conn
	once    sync.Once
	onClose func(*trackedConn)
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.onClose(c) })
	return err
}
