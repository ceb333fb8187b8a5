//go:build linux

package main

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// notify tells the service manager about narhashd's state (sd_notify(3)):
// one datagram holding state, such as "READY=1", sent to the Unix socket
// named by $NOTIFY_SOCKET, whose name may start with @ for an abstract
// socket. Without $NOTIFY_SOCKET it does nothing.
func notify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if !strings.HasPrefix(addr, "/") && !strings.HasPrefix(addr, "@") {
		return fmt.Errorf("notify %s: NOTIFY_SOCKET=%q is not a Unix socket path or @abstract name", state, addr)
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify %s: %w", state, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify %s: %w", state, err)
	}
	return nil
}
