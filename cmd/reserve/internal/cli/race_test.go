//go:build race

package cli

// raceEnabled says that the tests run with the race detector, so the
// reserve binary they run is built with it too.
const raceEnabled = true
