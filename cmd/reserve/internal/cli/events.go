package cli

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis-reservation/reservation"
)

// notes prints reserve's sentences about what happens under it (the
// library's events) on stderr, each once per process: a person reads each
// thing once, however often the library reports it.
type notes struct {
	a    *app
	mu   sync.Mutex
	said map[string]bool // keys of the sentences printed
	set  []string        // the resources reserve run holds together, if several
}

// Keys of the sentences that are printed once per process whatever they
// concern.
const (
	noteGuard    = "restart-guard"
	noteEviction = "eviction-risk"
)

// say prints sentence, redacted, after "reserve: ", unless a sentence with
// the same key was printed before. It reports whether it printed it.
func (n *notes) say(key, sentence string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.said[key] {
		return false
	}
	if n.said == nil {
		n.said = make(map[string]bool)
	}
	n.said[key] = true
	// Under the lock, so that two sentences never interleave.
	fmt.Fprintf(n.a.stderr, "reserve: %s\n", n.a.redact(oneLine(sentence)))
	return true
}

// saidAbout reports whether a sentence printed so far had text in its key
// (a refused permission's key holds the library's error).
func (n *notes) saidAbout(text string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for key := range n.said {
		if strings.Contains(key, text) {
			return true
		}
	}
	return false
}

// lostKey is the key of the sentence about the loss of resource.
func lostKey(resource string) string { return "lost\x00" + resource }

// lostSetKey is the key of the sentence about the loss of the resources
// held together: the loss of any is said once, for all.
const lostSetKey = "lost\x00\x00set"

// hold tells n the resources that reserve run holds, so that the loss of
// any of several held together is said once, for all of them.
func (n *notes) hold(resources []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.set = resources
}

// lost says, once, that the reservation of resource is gone, for err, as
// the library's event reports it: for a member of the set that reserve run
// holds, the set's loss, naming the member.
func (n *notes) lost(resource string, err error) {
	if set := n.holding(); len(set) > 1 && slices.Contains(set, resource) {
		n.lostSet(set, fmt.Errorf("%w (member %q of the set)", err, resource))
		return
	}
	n.say(lostKey(resource), lostSentence(resource, err))
}

// lostHeld says, once, that r, what reserve run holds, is gone: for a
// set, its error names the member lost.
func (n *notes) lostHeld(r *reservation.Reservation) {
	if set := n.holding(); len(set) > 1 {
		n.lostSet(set, r.Err())
		return
	}
	n.say(lostKey(r.Resource()), lostSentence(r.Resource(), r.Err()))
}

// lostSet says, once, that the set is gone, for err.
func (n *notes) lostSet(set []string, err error) {
	n.say(lostSetKey, fmt.Sprintf("the reservation of %s, held together, is gone: %s", setName(set), errText(err)))
}

// holding returns the resources that reserve run holds together, if any.
func (n *notes) holding() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.set
}

// onEvent returns the Options.OnEvent hook of a Client on addr, which
// where names: it tells the person, in sentences, what they must know or
// do. It is called on the library's path, so it only formats and prints.
func (f *connFlags) onEvent(a *app, addr, where string, kind topology) func(reservation.Event) {
	return func(e reservation.Event) {
		if f.observe != nil {
			f.observe(e)
		}
		switch e.Kind {
		case reservation.EventRestartGuard:
			a.notes.say(noteGuard, guardSentence(where, kind, e.Duration, f.primeCommand(a, addr)))
		case reservation.EventEvictionRisk:
			a.notes.say(noteEviction, fmt.Sprintf("%s may evict keys when its memory is full (%s), "+
				"and an evicted reservation lets a second holder in: set its maxmemory-policy to noeviction",
				where, errText(e.Err)))
		case reservation.EventNoPermission:
			// One sentence for each command refused.
			a.notes.say(string(e.Kind)+"\x00"+errText(e.Err), fmt.Sprintf("%s refuses a command to this user, "+
				"so reserve does without it (%s): allow it in the user's ACL", where, errText(e.Err)))
		case reservation.EventLost:
			a.notes.lost(e.Resource, e.Err)
		case reservation.EventServerFailed:
			// Once for each server: the first failure says it is down,
			// and the per-server view of status shows the rest.
			var ne *reservation.NodeError
			if errors.As(e.Err, &ne) {
				a.notes.say(string(e.Kind)+"\x00"+hostPort(ne.Addr), f.serverFailedSentence(ne))
			}
		}
		// The others are for the log records (--log-level): acquisitions,
		// renewals and releases are what reserve does anyway; Redis errors
		// are retried and, when they matter, end in an error or a loss
		// that reserve reports; tracking-unavailable changes how soon a
		// waiter is woken, not whether it is right, and asks nothing of
		// the person.
	}
}

// guardSentence tells that the restart guard holds acquisitions back for
// left on the deployment that where names, why, and how to lift it on one
// known to be new.
func guardSentence(where string, kind topology, left time.Duration, prime string) string {
	if kind == quorum {
		// One server's guard: the others vote meanwhile, and an
		// acquisition waits only when too few of them can.
		return fmt.Sprintf("a server of %s looks new or lost its data, so its restart guard keeps it from voting for %s more, "+
			"until holders from before have seen their loss (acquisitions wait for it only when a majority cannot vote without it); "+
			"if these servers are new, run: %s", where, fmtDuration(left), prime)
	}
	return fmt.Sprintf("%s looks new or lost its data, so the restart guard holds acquisitions back for %s more, "+
		"until holders from before have seen their loss; if %s new, run: %s", where, fmtDuration(left), thisOne(kind), prime)
}

// lostSentence tells that the reservation of resource was lost, and why.
func lostSentence(resource string, err error) string {
	return fmt.Sprintf("the reservation of %q is gone: %s", resource, errText(err))
}

// errText returns err's message, or "no reason given" for nil.
func errText(err error) string {
	if err == nil {
		return "no reason given"
	}
	return err.Error()
}

// primeCommand returns the reserve prime command line for the Redis at
// addr, with the connection flags that differ from their defaults. A
// password in the URL shows as xxxxx.
func (f *connFlags) primeCommand(a *app, addr string) string {
	args := []string{"reserve", "prime"}
	if f.kind == quorum && f.dep != nil {
		args = append(args, "--quorum")
		for _, addr := range f.dep.addrs {
			args = append(args, "--redis", shellQuote(display(addr)))
		}
	} else if shown := display(addr); shown != defaultRedis {
		args = append(args, "--redis", shellQuote(shown))
	}
	if f.cmd != nil && f.cmd.Flags().Changed("cluster") {
		args = append(args, clusterArg(f.cluster))
	}
	if f.prefix != reservation.DefaultPrefix {
		args = append(args, "--prefix", shellQuote(f.prefix))
	}
	for _, fl := range []struct{ name, v string }{{"tls-ca", f.tlsCA}, {"tls-cert", f.tlsCert}, {"tls-key", f.tlsKey}} {
		if fl.v != "" {
			args = append(args, "--"+fl.name, shellQuote(fl.v))
		}
	}
	return a.redact(strings.Join(args, " "))
}

// clusterArg returns the --cluster flag that says on.
func clusterArg(on bool) string {
	if on {
		return "--cluster"
	}
	return "--cluster=false"
}

// thisOne names the deployment of kind, with its verb, in a sentence that
// says what to do if it is new: "if this server is new".
func thisOne(kind topology) string {
	switch kind {
	case cluster:
		return "this Cluster is"
	case quorum:
		return "these servers are"
	}
	return "this server is"
}

// shellQuote quotes s for a POSIX shell, when it needs it.
func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./_-", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
