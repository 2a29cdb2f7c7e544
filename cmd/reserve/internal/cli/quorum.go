package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/redis-reservation/reservation"
)

// Quorum mode: --quorum with --redis given once for each server (or
// $RESERVE_QUORUM with the addresses in $REDIS_URL). The form is explicit
// so that several addresses are never taken for a Cluster's nodes, and a
// second --redis left over in a script is never taken for a quorum: without
// --quorum, several addresses are a usage error.

// minQuorum is the fewest servers of a quorum: with fewer, a majority is
// every server, and none may fail.
const minQuorum = 3

// servers answers the Redis addresses of the flags, and whether they are
// a quorum's. It refuses, as usage errors, several addresses without
// --quorum, and --quorum with too few servers, an even number of them, a
// server given twice, a Sentinel or Cluster URL, or --cluster.
func (f *connFlags) servers(a *app) (addrs []string, isQuorum bool, err error) {
	addrs, from := f.addrs(a)
	on, qfrom, err := f.quorumSetting(a)
	switch {
	case err != nil:
		return nil, false, err
	case !on && len(addrs) > 1 && from == "--redis":
		return nil, false, usageErrorf("--redis is given %d times: for a quorum over these servers, add --quorum; "+
			"for a Redis Cluster, give one --redis (a node's address, or a URL with ?addr= for more nodes)", len(addrs))
	case !on && len(addrs) > 1:
		return nil, false, usageErrorf("$%s holds %d addresses: for a quorum over these servers, add --quorum (or set $%s=true); "+
			"for a Redis Cluster, give one address (a node's, or a URL with ?addr= for more nodes)", envRedisURL, len(addrs), envQuorum)
	case !on:
		return addrs, false, nil
	}
	if err := f.checkQuorum(a, addrs, from, qfrom); err != nil {
		return nil, false, err
	}
	return addrs, true, nil
}

// quorumSetting answers whether quorum mode is on, by --quorum or else
// $RESERVE_QUORUM, and which of them said so, for messages.
func (f *connFlags) quorumSetting(a *app) (on bool, from string, err error) {
	if f.cmd != nil && f.cmd.Flags().Changed("quorum") {
		return f.quorum, "--quorum", nil
	}
	v := a.getenv(envQuorum)
	if v == "" {
		return false, "", nil
	}
	on, err = strconv.ParseBool(v)
	if err != nil {
		return false, "", usageErrorf("$%s %q: want true or false (1 or 0)", envQuorum, v)
	}
	return on, "$" + envQuorum, nil
}

// checkQuorum refuses addrs as a quorum's servers when they cannot be
// one: from says where they came from ("" for the default), qfrom what
// turned quorum mode on, for the messages.
func (f *connFlags) checkQuorum(a *app, addrs []string, from, qfrom string) error {
	if set, on, err := f.clusterSetting(a); err != nil {
		return err
	} else if set && on {
		cfrom := "--cluster"
		if f.cmd == nil || !f.cmd.Flags().Changed("cluster") {
			cfrom = "$" + envCluster
		}
		return usageErrorf("%s and %s exclude each other: a quorum is over independent Redis servers, not the nodes of a Redis Cluster", qfrom, cfrom)
	}
	each := "give --redis once for each"
	if from == "$"+envRedisURL {
		each = "give them all in $" + envRedisURL + ", separated by spaces"
	}
	n := len(addrs)
	switch {
	case from == "":
		return usageErrorf("%s needs the address of each server: %s (3 servers, or 5)", qfrom, each)
	case n < minQuorum:
		return usageErrorf("%s needs at least %d servers, got %d: %s (with fewer, a majority is every server, and none may fail)",
			qfrom, minQuorum, n, each)
	case n%2 == 0:
		return usageErrorf("%s needs an odd number of servers, got %d: a majority of %d is %d, so they survive no more failures than %d servers do; "+
			"give %d or %d", qfrom, n, n, n/2+1, n-1, n-1, n+1)
	}
	seen := make(map[string]bool, n)
	for _, addr := range addrs {
		switch urlTopology(addr) {
		case sentinel:
			return usageErrorf("%s: %s is a Sentinel URL (master_name): each server of a quorum is one Redis server, "+
				"given by its own address", qfrom, f.shown(a, addr))
		case cluster:
			return usageErrorf("%s: %s is a Redis Cluster URL (addr=): each server of a quorum is one Redis server, "+
				"given by its own address", qfrom, f.shown(a, addr))
		}
		hp := hostPort(addr)
		if seen[hp] {
			return usageErrorf("%s: the server at %s is given twice: the servers of a quorum must be independent", qfrom, hp)
		}
		seen[hp] = true
	}
	return nil
}

// describeQuorum names the quorum of addrs for messages, without
// passwords.
func describeQuorum(addrs []string) string {
	return fmt.Sprintf("the quorum of %d Redis servers (%s)", len(addrs), quorumHosts(addrs))
}

// quorumHosts returns the host:port of each of addrs, for messages.
func quorumHosts(addrs []string) string {
	hosts := make([]string, len(addrs))
	for i, addr := range addrs {
		hosts[i] = hostPort(addr)
	}
	return strings.Join(hosts, ", ")
}

// connectQuorum is connect for a quorum over the servers of addrs.
func (f *connFlags) connectQuorum(ctx context.Context, a *app, addrs []string, opt reservation.Options) (*reservation.Client, error) {
	c, err := f.quorumClient(ctx, a, addrs, &opt)
	if err != nil {
		return nil, err
	}
	if err := f.ping(ctx, c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// quorumClient returns the quorum Client over the servers of addrs, with
// opt, once it knows that none of them is a Cluster node or a Sentinel
// (kinds says how it asks). It does not check that they answer.
func (f *connFlags) quorumClient(ctx context.Context, a *app, addrs []string, opt *reservation.Options) (*reservation.Client, error) {
	if err := f.options(a, addrs, opt); err != nil {
		return nil, err
	}
	d := &deployment{kind: quorum, addrs: addrs, where: describeQuorum(addrs),
		username: opt.Username, password: opt.Password, tls: opt.TLSConfig}
	f.where, f.kind, f.dep = d.where, d.kind, d
	// A bad address: the library says what is wrong, without its
	// password; each server on its own, so that the message names it.
	for _, addr := range addrs {
		c, err := reservation.New(addr, opt)
		if err != nil {
			return nil, inputError(err)
		}
		c.Close()
	}
	if opt.OnEvent == nil {
		opt.OnEvent = f.onEvent(a, addrs[0], d.where, d.kind)
	}
	c, err := d.client(opt)
	if err != nil {
		return nil, inputError(err)
	}
	if set, on, _ := f.clusterSetting(a); !set || on {
		if err := f.kinds(ctx, addrs, c.Options()); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// kinds asks each server of addrs what it is, all at once (detect), and
// refuses a Cluster node or a Sentinel: each server of a quorum must be a
// plain one. A server that does not answer within the quorum timeout is
// left to the first contact, which names it; a minority may be down.
func (f *connFlags) kinds(ctx context.Context, addrs []string, opt reservation.Options) error {
	ctx, cancel := context.WithTimeout(ctx, opt.QuorumTimeout)
	defer cancel()
	modes := make([]string, len(addrs))
	var wg sync.WaitGroup
	for i, addr := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			modes[i], _ = detect(ctx, singleOptions(addr, &opt))
		}()
	}
	wg.Wait()
	for i, mode := range modes {
		switch mode {
		case "cluster":
			return inputError(fmt.Errorf("%s is a Redis Cluster node: each server of a quorum must be a Redis server of its own, "+
				"not part of a Cluster (leave out --quorum to use the Cluster)", hostPort(addrs[i])))
		case "sentinel":
			return inputError(fmt.Errorf("%s is a Redis Sentinel, not a Redis server: each server of a quorum must be a Redis server "+
				"of its own (leave out --quorum to use the master that the Sentinel names, with ?master_name=)", hostPort(addrs[i])))
		}
	}
	return nil
}

// quorumFailure says why a call in quorum mode failed: too few servers
// answered, and which failed how.
func (f *connFlags) quorumFailure(e *reservation.QuorumError) error {
	n := len(f.dep.addrs)
	return fmt.Errorf("cannot use %s: %d of the %d servers answered, and %d (a majority) must: %s",
		f.where, e.Got, n, e.Needed, f.serverFailures(e.Servers))
}

// serverFailures says, for a person, how each server of nodes failed.
func (f *connFlags) serverFailures(nodes []*reservation.NodeError) string {
	parts := make([]string, len(nodes))
	for i, n := range nodes {
		parts[i] = hostPort(n.Addr) + " " + f.serverCause(n.Addr, n.Err)
	}
	return strings.Join(parts, "; ")
}

// serverCause says how the server at addr failed, after its address:
// "does not answer (connection refused)", "refused the credentials: ...".
func (f *connFlags) serverCause(addr string, err error) string {
	var (
		auth *reservation.AuthError
		op   *net.OpError
	)
	switch {
	case errors.As(err, &auth):
		return f.authCause() + ": " + auth.Err.Error()
	case errors.Is(err, reservation.ErrNoPermission):
		return refusedCommand(err)
	case errors.Is(err, context.DeadlineExceeded) || timedOut(err):
		return "did not answer in time"
	case errors.As(err, &op):
		return "does not answer (" + shortCause(op) + ")"
	case errors.Is(err, redis.ErrClosed):
		return "does not answer (its connection is closed)"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "does not answer (it closed the connection: stopped, or restarted)"
	}
	return "failed: " + libCause(err).Error()
}

// authCause says that a server refused the credentials, or wants some:
// where they go when none were given.
func (f *connFlags) authCause() string {
	if !f.password {
		return "wants a password (in its URL or $" + envRedisPassword + ")"
	}
	return "refused the credentials"
}

// serverFailedSentence tells that one server of the quorum that where
// names failed, how, and that reserve goes on with the others.
func (f *connFlags) serverFailedSentence(ne *reservation.NodeError) string {
	n := 0
	if f.dep != nil {
		n = len(f.dep.addrs)
	}
	return fmt.Sprintf("%s, one of the %d servers of the quorum, %s; reserve carries on as long as a majority (%d of the %[2]d) answers",
		hostPort(ne.Addr), n, f.serverCause(ne.Addr, ne.Err), n/2+1)
}
