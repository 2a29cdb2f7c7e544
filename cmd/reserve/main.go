// Command reserve runs a command while holding a reservation in Redis, and
// shows and breaks reservations. See docs/CLI.md, or run "reserve --help".
package main

import (
	"os"

	"github.com/redis-reservation/reservation/cmd/reserve/internal/cli"
)

func main() {
	os.Exit(cli.Main())
}
