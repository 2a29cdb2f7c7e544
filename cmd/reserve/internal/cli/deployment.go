package cli

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/redis-reservation/reservation"
)

// topology is the kind of Redis deployment reserve talks to.
type topology int

const (
	single   topology = iota // one server
	sentinel                 // the master that Redis Sentinel names
	cluster                  // a Redis Cluster
	quorum                   // several independent servers, a majority of which must agree (--quorum)
)

// deployment is the Redis deployment that the flags name, found out by
// resolve.
type deployment struct {
	kind topology
	addr string // as given: host:port or a URL, which may hold passwords
	// addrs are a quorum's servers, as given; nil for other kinds.
	addrs []string
	// where names it in messages, without a password: "Redis at
	// host:port", "the Redis Cluster at host:port", "the Sentinel master
	// "name" (Sentinels at host:port)".
	where string
	// co is the Cluster's options when a single address was found (by
	// --cluster or by asking the server) to be a Cluster node; nil for a
	// Cluster URL, which the library parses.
	co *redis.ClusterOptions
	// The credentials and TLS of the Options, which override the URL's.
	username, password string
	tls                *tls.Config
}

// urlTopology answers which deployment addr names by its form, the way
// go-redis's parsers read a URL: a master_name parameter is a Sentinel URL
// (ParseFailoverURL), addr parameters without one a Cluster URL
// (ParseClusterURL), anything else one server (ParseURL). The library's
// New reads an address the same way.
func urlTopology(addr string) topology {
	_, rest, ok := strings.Cut(addr, "://")
	if !ok {
		return single
	}
	_, query, _ := strings.Cut(rest, "?")
	q, err := url.ParseQuery(query)
	switch {
	case err != nil:
		return single // the parser says what is wrong
	case q.Has("master_name"):
		return sentinel
	case q.Has("addr"):
		return cluster
	}
	return single
}

// resolve finds out which deployment addr names: a Sentinel or Cluster URL
// by its form; a single address is a Cluster node with --cluster (or
// $RESERVE_CLUSTER), one server with --cluster=false, and otherwise what
// the server says it is (detect). opt holds the credentials and TLS
// settings (options fills them first).
func (f *connFlags) resolve(ctx context.Context, a *app, addr string, opt *reservation.Options) (*deployment, error) {
	clusterSet, clusterOn, err := f.clusterSetting(a)
	if err != nil {
		return nil, err
	}
	d := &deployment{kind: urlTopology(addr), addr: addr, username: opt.Username, password: opt.Password, tls: opt.TLSConfig}
	switch {
	case d.kind == sentinel && clusterSet && clusterOn:
		return nil, usageErrorf("--cluster names a Redis Cluster, and %s names a Sentinel master (master_name): give one of them", f.shown(a, addr))
	case d.kind == sentinel:
		d.where = describe(d.kind, addr)
		return d, f.askSentinels(ctx, a, d, opt)
	case d.kind == cluster:
		d.where = describe(d.kind, addr)
		return d, nil
	}
	// A bad address: the library says what is wrong, without its
	// password. The Client is only for that: it has not touched the
	// network.
	c, err := reservation.New(addr, opt)
	if err != nil {
		return nil, inputError(err)
	}
	c.Close()
	ropt := singleOptions(addr, opt)
	d.where = "Redis at " + ropt.Addr
	if clusterSet && !clusterOn {
		return d, nil
	}
	if !clusterSet {
		mode, err := detect(ctx, ropt)
		switch {
		case err != nil && timedOut(err):
			// The server does not answer: asking again would only
			// double the wait.
			if ierr := interrupted(ctx); ierr != nil {
				return nil, ierr
			}
			return nil, unavailable(fmt.Errorf("cannot use %s: no answer: %v", d.where, err))
		case mode == "sentinel":
			return nil, f.sentinelGiven(ctx, a, addr, ropt)
		case mode != "cluster":
			// One server, or it could not tell (a wrong password, a
			// server that is down, a user without INFO): the normal
			// path reports what is wrong.
			return d, nil
		}
	}
	co, err := clusterOptions(addr, ropt)
	if err != nil {
		return nil, err
	}
	d.kind, d.co = cluster, co
	d.where = describe(cluster, addr)
	return d, nil
}

// askSentinels asks the Sentinels of d which server is the master, in
// one round trip to each, all at once: the first contact with a Sentinel
// deployment. When none answers, it says why (none answers, they refuse
// their credentials, they know no such master) at once, where go-redis's
// failover client would retry for longer than reserve waits, and then say
// only that time ran out.
func (f *connFlags) askSentinels(ctx context.Context, a *app, d *deployment, opt *reservation.Options) error {
	fo, err := redis.ParseFailoverURL(d.addr)
	if err != nil {
		// The library says what is wrong, without the passwords.
		_, lerr := reservation.New(d.addr, opt)
		return inputError(cmp.Or(lerr, err))
	}
	if fo.MasterName == "" {
		return inputError(fmt.Errorf("%s has an empty master_name: give the name of the master that the Sentinels watch", f.shown(a, d.addr)))
	}
	failures := askMaster(ctx, fo, opt)
	if len(failures) == 0 {
		return nil
	}
	if ierr := interrupted(ctx); ierr != nil {
		return ierr
	}
	var unknown, refused, other []string
	var authErr error
	for addr, err := range failures {
		switch {
		case errors.Is(err, redis.Nil):
			unknown = append(unknown, addr)
		case isAuthReply(err):
			refused, authErr = append(refused, addr), err
		default:
			other = append(other, fmt.Sprintf("%s (%s)", addr, shortCause(err)))
		}
	}
	slices.Sort(unknown)
	slices.Sort(refused)
	slices.Sort(other)
	switch {
	case len(unknown) > 0:
		names := ""
		if ms := sentinelMasters(ctx, sentinelOptions(fo, unknown[0], opt)); len(ms) > 0 {
			for i, m := range ms {
				ms[i] = strconv.Quote(m)
			}
			names = fmt.Sprintf(" (they watch %s)", strings.Join(ms, ", "))
		}
		return unavailable(fmt.Errorf("cannot use %s: the Sentinels at %s know no master named %q%s",
			d.where, strings.Join(unknown, ", "), fo.MasterName, names))
	case len(refused) > 0 && fo.SentinelPassword == "":
		return unavailable(fmt.Errorf("cannot use %s: the Sentinels at %s want a password: give theirs in the URL, "+
			"as redis://user:password@host:port?master_name=... ($%s is the master's): %w",
			d.where, strings.Join(refused, ", "), envRedisPassword, authErr))
	case len(refused) > 0:
		return unavailable(fmt.Errorf("cannot use %s: the Sentinels at %s refused their credentials, the URL's user:password@ "+
			"($%s and the URL's password parameter are the master's): %w", d.where, strings.Join(refused, ", "), envRedisPassword, authErr))
	}
	return unavailable(fmt.Errorf("cannot use %s: no Sentinel answers: %s", d.where, strings.Join(other, ", ")))
}

// askMaster asks every Sentinel of fo at once for the address of the
// master, and answers why each failed, by address, or nothing as soon as
// one answered.
func askMaster(ctx context.Context, fo *redis.FailoverOptions, opt *reservation.Options) map[string]error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	type answer struct {
		addr string
		err  error
	}
	answers := make(chan answer, len(fo.SentinelAddrs))
	for _, addr := range fo.SentinelAddrs {
		go func() {
			sc := redis.NewSentinelClient(sentinelOptions(fo, addr, opt))
			defer sc.Close()
			hp, err := sc.GetMasterAddrByName(ctx, fo.MasterName).Result()
			if err == nil && len(hp) != 2 {
				err = fmt.Errorf("unexpected answer %q", hp)
			}
			answers <- answer{addr, err}
		}()
	}
	failures := make(map[string]error)
	for range fo.SentinelAddrs {
		ans := <-answers
		if ans.err == nil {
			cancel() // the others need not answer, but are waited for
			failures = nil
			continue
		}
		if failures != nil {
			failures[ans.addr] = ans.err
		}
	}
	return failures
}

// sentinelOptions returns the options of a client of the Sentinel at
// addr, as the library's failover client makes them: the URL's user and
// password, and TLS. It does not retry: a failure is reported at once.
func sentinelOptions(fo *redis.FailoverOptions, addr string, opt *reservation.Options) *redis.Options {
	o := &redis.Options{Addr: addr, Username: fo.SentinelUsername, Password: fo.SentinelPassword, TLSConfig: fo.TLSConfig}
	if opt.TLSConfig != nil {
		o.TLSConfig = opt.TLSConfig.Clone()
	}
	return oneShot(o)
}

// isAuthReply reports whether err is Redis refusing the credentials, or
// asking for them.
func isAuthReply(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	msg := rerr.Error()
	return strings.HasPrefix(msg, "WRONGPASS") || strings.HasPrefix(msg, "NOAUTH") ||
		strings.Contains(msg, "invalid password") || strings.Contains(msg, "without any password configured")
}

// clusterOptions returns the go-redis options of d, a Cluster, with the
// credentials and TLS that its Client has, for a client of reserve's own;
// nil when d is not a Cluster.
func (d *deployment) clusterOptions() *redis.ClusterOptions {
	if d.kind != cluster {
		return nil
	}
	co := d.co
	if co == nil {
		var err error
		if co, err = redis.ParseClusterURL(d.addr); err != nil {
			return nil
		}
	}
	c := *co
	c.Addrs = append([]string(nil), co.Addrs...)
	withCredentials(&c.Username, &c.Password, &c.TLSConfig, d.username, d.password, d.tls)
	return &c
}

// failoverOptions returns the go-redis options of d, a Sentinel
// deployment, with the credentials and TLS that its Client has (the
// master's, as the library's NewFailover takes them), for a client of
// reserve's own; nil when d is not one, or its URL does not parse.
func (d *deployment) failoverOptions() *redis.FailoverOptions {
	if d.kind != sentinel {
		return nil
	}
	fo, err := redis.ParseFailoverURL(d.addr)
	if err != nil {
		return nil
	}
	withCredentials(&fo.Username, &fo.Password, &fo.TLSConfig, d.username, d.password, d.tls)
	return fo
}

// withCredentials sets *username, *password and *tlsConfig to user, pass
// and a copy of tc, each where it is given: the credentials and TLS that
// reserve's Client has override those of a URL parsed again.
func withCredentials(username, password *string, tlsConfig **tls.Config, user, pass string, tc *tls.Config) {
	if user != "" {
		*username = user
	}
	if pass != "" {
		*password = pass
	}
	if tc != nil {
		*tlsConfig = tc.Clone()
	}
}

// client returns the library Client for d, with opt. It does not touch
// the network.
func (d *deployment) client(opt *reservation.Options) (*reservation.Client, error) {
	if d.kind == quorum {
		return reservation.NewQuorum(d.addrs, opt)
	}
	if d.co != nil {
		return reservation.NewCluster(d.co, opt)
	}
	return reservation.New(d.addr, opt)
}

// singleOptions returns the go-redis options of the single-server address
// addr (which the library accepted), with opt's credentials and TLS.
func singleOptions(addr string, opt *reservation.Options) *redis.Options {
	ropt := &redis.Options{Addr: addr}
	if strings.Contains(addr, "://") {
		if o, err := redis.ParseURL(addr); err == nil {
			ropt = o
		}
	}
	withCredentials(&ropt.Username, &ropt.Password, &ropt.TLSConfig, opt.Username, opt.Password, opt.TLSConfig)
	return ropt
}

// clusterOptions returns the Cluster options of a single-server address
// that names a Cluster node: the URL's user, password and TLS, and the
// node as the Cluster's first address.
func clusterOptions(addr string, ropt *redis.Options) (*redis.ClusterOptions, error) {
	if ropt.DB != 0 {
		return nil, inputError(fmt.Errorf("a Redis Cluster has only database 0: leave the database (/%d) out of the URL", ropt.DB))
	}
	if !strings.Contains(addr, "://") {
		return &redis.ClusterOptions{Addrs: []string{addr}}, nil
	}
	co, err := redis.ParseClusterURL(addr)
	if err != nil {
		// ParseURL took it, so it parses as a URL: what is left is a
		// parameter a Cluster does not take.
		return nil, inputError(fmt.Errorf("bad Redis URL for a Cluster: %s", redactedText(err, addr)))
	}
	return co, nil
}

// detect asks the server at ropt which kind it is, in one round trip
// (INFO server, whose redis_mode is standalone, cluster or sentinel), and
// answers its mode. A user that may not run INFO is asked CLUSTER INFO
// instead, which a Cluster's users need anyway (go-redis reads the slot
// map with CLUSTER SHARDS or SLOTS). It answers "" when it cannot tell,
// with the error.
func detect(ctx context.Context, ropt *redis.Options) (string, error) {
	rdb := redis.NewClient(oneShot(ropt))
	defer rdb.Close()
	ctx, cancel := bounded(ctx)
	defer cancel()
	info, err := rdb.Info(ctx, "server").Result()
	if err == nil {
		return infoField(info, "redis_mode"), nil
	}
	if !isNoPerm(err) {
		return "", err
	}
	if _, err := rdb.ClusterInfo(ctx).Result(); err != nil {
		return "", err
	}
	return "cluster", nil
}

// isNoPerm reports whether err is Redis refusing a command to the user
// (an ACL error).
func isNoPerm(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.Contains(rerr.Error(), "NOPERM")
}

// timedOut reports whether err is a wait that ran out: a dial or a read
// that timed out, or a context deadline.
func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// infoField returns the value of field in the text of INFO, or "".
func infoField(info, field string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

// sentinelGiven is the usage error for the plain address of a Sentinel: it
// needs the name of the master, which it asks the Sentinel for.
func (f *connFlags) sentinelGiven(ctx context.Context, a *app, addr string, ropt *redis.Options) error {
	ms := sentinelMasters(ctx, oneShot(ropt))
	names, name := "", "NAME"
	if len(ms) > 0 {
		quoted := make([]string, len(ms))
		for i, m := range ms {
			quoted[i] = strconv.Quote(m)
		}
		names = fmt.Sprintf(" (it watches %s)", strings.Join(quoted, ", "))
	}
	if len(ms) == 1 {
		name = url.QueryEscape(ms[0])
	}
	shown := f.shown(a, addr)
	want := shown
	if !strings.Contains(addr, "://") {
		want = "redis://" + shown
	}
	sep := "?"
	if strings.Contains(want, "?") {
		sep = "&"
	}
	return inputError(fmt.Errorf("%s is a Redis Sentinel, not a Redis server: give the name of its master%s in the URL, as %s "+
		"(the URL's user and password are then the Sentinels', and $%s the master's)",
		shown, names, want+sep+"master_name="+name, envRedisPassword))
}

// oneShot returns a copy of ropt for a client that asks one question and
// reports a failure at once: one dial, no retry, bounded by the context.
func oneShot(ropt *redis.Options) *redis.Options {
	o := *ropt
	o.MaxRetries = -1
	o.DialerRetries = 1
	o.PoolSize = 1
	o.DisableIdentity = true
	o.ContextTimeoutEnabled = true
	return &o
}

// sentinelMasters answers the names of the masters the Sentinel of o
// watches, or none when it does not say.
func sentinelMasters(ctx context.Context, o *redis.Options) []string {
	sc := redis.NewSentinelClient(o)
	defer sc.Close()
	ctx, cancel := bounded(ctx)
	defer cancel()
	masters, err := sc.Masters(ctx).Result()
	if err != nil {
		return nil
	}
	var names []string
	for _, m := range masters {
		switch m := m.(type) {
		case map[any]any: // RESP3
			if n, ok := m["name"].(string); ok {
				names = append(names, n)
			}
		case []any: // RESP2: name, value, name, value...
			for i := 0; i+1 < len(m); i += 2 {
				if k, _ := m[i].(string); k == "name" {
					if n, ok := m[i+1].(string); ok {
						names = append(names, n)
					}
				}
			}
		}
	}
	return names
}

// describe names the deployment of addr, of kind, for messages, without
// passwords.
func describe(kind topology, addr string) string {
	switch kind {
	case sentinel:
		if fo, err := redis.ParseFailoverURL(addr); err == nil {
			return fmt.Sprintf("the Sentinel master %q (Sentinels at %s)", fo.MasterName, strings.Join(fo.SentinelAddrs, ", "))
		}
		return "the Sentinel master of " + display(addr)
	case cluster:
		return "the Redis Cluster at " + clusterHosts(addr)
	}
	return "Redis at " + hostPort(addr)
}

// clusterHosts returns the node addresses that addr names, for messages.
func clusterHosts(addr string) string {
	if !strings.Contains(addr, "://") {
		return addr
	}
	if co, err := redis.ParseClusterURL(addr); err == nil {
		return strings.Join(co.Addrs, ", ")
	}
	return display(addr)
}

// hosts returns the addresses that d names, for messages.
func (d *deployment) hosts() string {
	switch d.kind {
	case cluster:
		return clusterHosts(d.addr)
	case quorum:
		return quorumHosts(d.addrs)
	}
	return hostPort(d.addr)
}

// redactedText returns err's text with the passwords of addr replaced.
func redactedText(err error, addr string) string {
	msg := err.Error()
	for _, pw := range urlPasswords(addr) {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	return msg
}

// urlPasswords answers the passwords in addr: the user information's, and
// a Sentinel URL's password parameter (the master's).
func urlPasswords(addr string) []string {
	u, err := url.Parse(addr)
	if err != nil || !strings.Contains(addr, "://") {
		return nil
	}
	var pws []string
	if u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			pws = append(pws, pw)
		}
	}
	for _, pw := range u.Query()["password"] {
		if pw != "" {
			pws = append(pws, pw)
		}
	}
	return pws
}
