package reservation

import (
	"context"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// NewFailover returns a Client for the master that Redis Sentinel names
// fo.MasterName, found through fo.SentinelAddrs. The Client follows
// failovers: commands go to the new master at once, as with go-redis's
// failover client, and so do the notifier's own connections (its
// subscriber and tracking connection), which a failover client handed to
// NewWithClient cannot do (its Sentinels are hidden). The password and user
// in opt override fo's Password and Username (the master's); the
// Sentinels' are fo's SentinelUsername and SentinelPassword. Options that
// send commands to replicas (ReplicaOnly, RouteByLatency, RouteRandomly)
// are refused: reservations live on the master. Like New, it does not
// touch the network.
func NewFailover(fo *redis.FailoverOptions, opt *Options) (*Client, error) {
	if fo == nil {
		return nil, optionError("nil failover options")
	}
	o, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	f := *fo
	f.SentinelAddrs = append([]string(nil), fo.SentinelAddrs...)
	switch {
	case f.MasterName == "":
		return nil, optionError("no Sentinel master name (master_name)")
	case len(f.SentinelAddrs) == 0:
		return nil, optionError("no Sentinel address")
	case f.ReplicaOnly || f.RouteByLatency || f.RouteRandomly:
		return nil, optionError("ReplicaOnly, RouteByLatency and RouteRandomly send commands to replicas: reservations live on the master")
	}
	o.credentials(&f.Username, &f.Password, &f.TLSConfig)
	f.ContextTimeoutEnabled = true // see New
	c := newClient(redis.NewFailoverClient(&f), o)
	c.ownsRDB = true
	c.sentinel = &f
	return c, nil
}

// NewCluster returns a Client for a Redis Cluster reached through
// co.Addrs (any of its nodes). The password and user in opt override co's.
// Options that send reads to replicas (ReadOnly, RouteByLatency,
// RouteRandomly) are refused: a replica may not have the last write yet.
// Like New, it does not touch the network.
func NewCluster(co *redis.ClusterOptions, opt *Options) (*Client, error) {
	if co == nil {
		return nil, optionError("nil cluster options")
	}
	o, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	cl := *co
	cl.Addrs = append([]string(nil), co.Addrs...)
	switch {
	case len(cl.Addrs) == 0:
		return nil, optionError("no cluster node address")
	case cl.ReadOnly || cl.RouteByLatency || cl.RouteRandomly:
		return nil, optionError("ReadOnly, RouteByLatency and RouteRandomly send reads to replicas, which may not have the last write")
	}
	o.credentials(&cl.Username, &cl.Password, &cl.TLSConfig)
	cl.ContextTimeoutEnabled = true // see New
	c := newClient(redis.NewClusterClient(&cl), o)
	c.ownsRDB = true
	return c, nil
}

// topologyOf tells which kind of deployment a redis:// or rediss:// URL
// names, the way go-redis's parsers read it: a master_name parameter for
// Sentinel (ParseFailoverURL), addr parameters without one for Cluster
// (ParseClusterURL), else one server (ParseURL).
func topologyOf(addr string) string {
	_, rest, ok := strings.Cut(addr, "://")
	if !ok {
		return "single"
	}
	_, query, _ := strings.Cut(rest, "?")
	q, err := url.ParseQuery(query)
	switch {
	case err != nil:
		return "single" // the parser says what is wrong
	case q.Has("master_name"):
		return "sentinel"
	case q.Has("addr"):
		return "cluster"
	}
	return "single"
}

// newFromURL is New for the Sentinel and Cluster URLs.
func newFromURL(addr, kind string, opt *Options) (*Client, error) {
	if kind == "sentinel" {
		fo, err := redis.ParseFailoverURL(addr)
		if err != nil {
			return nil, urlError(err, addr, "?master_name=NAME[&addr=host:port...]")
		}
		return NewFailover(fo, opt)
	}
	co, err := redis.ParseClusterURL(addr)
	if err != nil {
		return nil, urlError(err, addr, "?addr=host:port[&addr=host:port...]")
	}
	return NewCluster(co, opt)
}

// urlError is the error of a Sentinel or Cluster URL that go-redis refused,
// without the password.
func urlError(err error, addr, form string) error {
	if scheme, rest, _ := strings.Cut(addr, "://"); strings.Contains(rest, "@") {
		// The parser's words may quote part of the password (read as a
		// port, or as a bad escape): say nothing of them.
		return optionError("bad Redis URL: want %s://[user:password@]host:port%s, "+
			"with the password URL-escaped (%%2F for /, %%23 for #, %%3F for ?, %%25 for %%)", scheme, form)
	}
	return optionError("bad Redis URL: %s", redactURLError(err, addr))
}

// followSentinel subscribes to +switch-master on the Sentinels, one after
// the other, and tells the notifier when its master changes, so that its
// connections leave the old master at once, even when that one still
// answers (paused, then back before Sentinel demotes it).
func (n *notifier) followSentinel(fo *redis.FailoverOptions) {
	defer n.c.wg.Done()
	ctx := n.c.ctx
	failures := 0
	for i := 0; ctx.Err() == nil; i++ {
		addr := fo.SentinelAddrs[i%len(fo.SentinelAddrs)]
		sc := redis.NewSentinelClient(&redis.Options{
			Addr: addr, Username: fo.SentinelUsername, Password: fo.SentinelPassword,
			TLSConfig: fo.TLSConfig, Dialer: fo.Dialer, DialTimeout: fo.DialTimeout,
			MaxRetries: -1, ContextTimeoutEnabled: true,
		})
		if n.listenSentinel(ctx, sc, fo.MasterName) {
			failures = 0
		}
		sc.Close()
		// The next Sentinel at once after one that served, else after a
		// pause that grows while none answers.
		failures++
		sleep(ctx, min(100*time.Millisecond<<min(failures, 6), 5*time.Second))
	}
}

// listenSentinel handles +switch-master notices of sc until its connection
// fails or ctx ends. It reports whether the subscription was confirmed.
func (n *notifier) listenSentinel(ctx context.Context, sc *redis.SentinelClient, master string) (served bool) {
	ps := sc.Subscribe(ctx, "+switch-master")
	defer ps.Close()
	// A read blocked on the connection does not see ctx end: close it.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	for {
		msg, err := ps.ReceiveTimeout(ctx, healthInterval)
		if err != nil {
			if ctx.Err() != nil {
				return served
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				if ps.Ping(ctx) == nil {
					continue
				}
			}
			return served
		}
		if _, ok := msg.(*redis.Subscription); ok {
			served = true
		}
		m, ok := msg.(*redis.Message)
		if !ok {
			continue
		}
		// "<master name> <old ip> <old port> <new ip> <new port>"
		f := strings.Fields(m.Payload)
		if len(f) == 5 && f[0] == master {
			n.masterSwitched(net.JoinHostPort(f[3], f[4]))
		}
	}
}

// serverConns records the connections of the notifier's two clients, so
// that both leave a master that Sentinel replaced, and so that tracking is
// turned on only when both are on the same server (its REDIRECT names a
// client id of that server).
type serverConns struct {
	mu    sync.Mutex
	conns map[string]dialled // "subscriber" and "tracking": the last dialled
}

// dialled is a connection and when it was made.
type dialled struct {
	net.Conn
	at time.Time
}

// dial wraps dialer so that the connections it makes are recorded as name.
func (s *serverConns) dial(name string, dialer func(context.Context, string, string) (net.Conn, error)) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		cn, err := dialer(ctx, network, addr)
		if err == nil {
			s.mu.Lock()
			if s.conns == nil {
				s.conns = make(map[string]dialled)
			}
			s.conns[name] = dialled{cn, time.Now()}
			s.mu.Unlock()
		}
		return cn, err
	}
}

// sameServer reports whether the subscriber and the tracking connection
// last dialled the same address.
func (s *serverConns) sameServer() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps, tr := s.conns["subscriber"], s.conns["tracking"]
	return ps.Conn != nil && tr.Conn != nil && ps.RemoteAddr().String() == tr.RemoteAddr().String()
}

// closeAll closes every recorded connection: their clients dial again,
// through Sentinel, to the master of now.
func (s *serverConns) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cn := range s.conns {
		cn.Close()
	}
}

// closeOlder closes the connection that was dialled first, of two on
// different servers: the other one asked Sentinel for the master later.
func (s *serverConns) closeOlder() {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps, tr := s.conns["subscriber"], s.conns["tracking"]
	switch {
	case ps.Conn == nil || tr.Conn == nil:
	case ps.at.Before(tr.at):
		ps.Close()
	default:
		tr.Close()
	}
}
