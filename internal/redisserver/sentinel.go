package redisserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"
)

// SentinelOptions configures StartSentinel.
type SentinelOptions struct {
	// Options are those of every server; Dir gets a sub-directory per
	// server ("master", "replica-1", "sentinel-1", ...). The Sentinels
	// take only Dir, Bin and CPUs: they have no password of their own.
	Options
	// Replicas is the number of replicas; 0 means 1.
	Replicas int
	// Sentinels is the number of Sentinels; 0 means 3.
	Sentinels int
	// Quorum is the number of Sentinels that must agree the master is
	// down; 0 means a majority of them (2 of 3).
	Quorum int
	// MasterName is the name the Sentinels monitor the master under; ""
	// means "mymaster".
	MasterName string
	// DownAfter is down-after-milliseconds: how long the master must not
	// answer before a Sentinel thinks it down; 0 means 1.5 seconds (at 1 s,
	// a Sentinel was seen to find the new master down right after a
	// switch, and fail over again).
	DownAfter time.Duration
	// FailoverTimeout is failover-timeout; 0 means 3 seconds. A failover
	// of the same master is not tried again within twice this.
	FailoverTimeout time.Duration
}

// Sentinel is a master, its replicas and the Sentinels that monitor them,
// started by StartSentinel. A failover changes which server is the master:
// ask CurrentMaster.
type Sentinel struct {
	// MasterName is the name the Sentinels know the master by.
	MasterName string
	// Master is the server started as the master.
	Master *Server
	// Replicas are the servers started as its replicas.
	Replicas []*Server
	// Sentinels are the Sentinel processes.
	Sentinels []*Server
}

// StartSentinel starts a master with replicas (as StartReplicated does),
// then the Sentinels, configured to fail over quickly, and waits until
// every Sentinel knows the replicas and the other Sentinels, so that a
// failover can start at once. The Sentinels run redis-sentinel when one
// sits beside the redis-server binary, else redis-server --sentinel. On
// error, every server it started is killed.
func StartSentinel(ctx context.Context, o SentinelOptions) (*Sentinel, error) {
	replicas, err := orDefault("Replicas", o.Replicas, 1)
	if err != nil {
		return nil, err
	}
	sentinels, err := orDefault("Sentinels", o.Sentinels, 3)
	if err != nil {
		return nil, err
	}
	quorum, err := orDefault("Quorum", o.Quorum, sentinels/2+1)
	if err != nil {
		return nil, err
	}
	name := o.MasterName
	if name == "" {
		name = "mymaster"
	}
	downAfter, failover := o.DownAfter, o.FailoverTimeout
	if downAfter == 0 {
		downAfter = 1500 * time.Millisecond
	}
	if failover == 0 {
		failover = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, topologyTimeout)
	defer cancel()

	r, err := startReplicated(ctx, o.Options, replicas)
	if err != nil {
		return nil, err
	}
	s := &Sentinel{MasterName: name, Master: r.Master, Replicas: r.Replicas}
	host, port, _ := net.SplitHostPort(r.Master.Addr)
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	so := Options{Dir: o.Dir, Bin: o.Bin, CPUs: o.CPUs, sentinel: true,
		conf: confLine("sentinel", "monitor", name, host, port, strconv.Itoa(quorum)) +
			confLine("sentinel", "down-after-milliseconds", name, ms(downAfter)) +
			confLine("sentinel", "failover-timeout", name, ms(failover)),
	}
	if o.Password != "" {
		so.conf += confLine("sentinel", "auth-pass", name, o.Password)
	}
	for i := range sentinels {
		sn, err := startNode(ctx, so, fmt.Sprintf("sentinel-%d", i+1))
		if err != nil {
			s.Kill()
			return nil, err
		}
		s.Sentinels = append(s.Sentinels, sn)
	}
	if err := s.waitKnown(ctx); err != nil {
		s.Kill()
		return nil, err
	}
	return s, nil
}

// waitKnown waits until every Sentinel sees the master up, every replica
// synced, and the other Sentinels.
func (s *Sentinel) waitKnown(ctx context.Context) error {
	return poll(ctx, "wait for the Sentinels to know each other", func(ctx context.Context) error {
		for _, sn := range s.Sentinels {
			m, err := fields(sn.do(ctx, "SENTINEL", "MASTER", s.MasterName))
			if err != nil {
				return fmt.Errorf("sentinel %s: %w", sn.Addr, err)
			}
			if m["flags"] != "master" || m["num-slaves"] != strconv.Itoa(len(s.Replicas)) ||
				m["num-other-sentinels"] != strconv.Itoa(len(s.Sentinels)-1) {
				return fmt.Errorf("sentinel %s: master flags %s, %s replicas, %s other sentinels",
					sn.Addr, m["flags"], m["num-slaves"], m["num-other-sentinels"])
			}
			reps, err := sn.do(ctx, "SENTINEL", "REPLICAS", s.MasterName)
			if err != nil {
				return fmt.Errorf("sentinel %s: %w", sn.Addr, err)
			}
			list, _ := reps.([]any)
			for _, rep := range list {
				r, err := fields(rep, nil)
				if err != nil {
					return err
				}
				if r["flags"] != "slave" || r["master-link-status"] != "ok" {
					return fmt.Errorf("sentinel %s: replica %s:%s flags %s, master link %s",
						sn.Addr, r["ip"], r["port"], r["flags"], r["master-link-status"])
				}
			}
		}
		return nil
	})
}

// fields reads a RESP2 reply of alternating names and values.
func fields(v any, err error) (map[string]string, error) {
	if err != nil {
		return nil, err
	}
	list, ok := v.([]any)
	if !ok || len(list)%2 != 0 {
		return nil, fmt.Errorf("unexpected reply %v", v)
	}
	m := make(map[string]string, len(list)/2)
	for i := 0; i < len(list); i += 2 {
		k, _ := list[i].(string)
		m[k], _ = list[i+1].(string)
	}
	return m, nil
}

// SentinelAddrs returns the Sentinels' addresses.
func (s *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(s.Sentinels))
	for i, sn := range s.Sentinels {
		addrs[i] = sn.Addr
	}
	return addrs
}

// URL returns the go-redis form of the deployment's URL,
// redis://sentinel1?master_name=NAME&addr=sentinel2&addr=sentinel3, with
// the master's password in the password parameter when there is one.
func (s *Sentinel) URL() string {
	q := url.Values{"master_name": {s.MasterName}}
	for _, sn := range s.Sentinels[1:] {
		q.Add("addr", sn.Addr)
	}
	if s.Master.Password != "" {
		q.Set("password", s.Master.Password)
	}
	u := url.URL{Scheme: "redis", Host: s.Sentinels[0].Addr, RawQuery: q.Encode()}
	return u.String()
}

// Servers returns the master, the replicas and the Sentinels.
func (s *Sentinel) Servers() []*Server {
	all := append([]*Server{s.Master}, s.Replicas...)
	return append(all, s.Sentinels...)
}

// Server returns the server (or Sentinel) listening on addr, or nil.
func (s *Sentinel) Server(addr string) *Server {
	return find(s.Servers(), addr)
}

// Kill kills every server and Sentinel.
func (s *Sentinel) Kill() {
	killAll(s.Servers())
}

// CurrentMaster returns the master's address as the first running
// Sentinel that answers reports it (SENTINEL get-master-addr-by-name).
func (s *Sentinel) CurrentMaster(ctx context.Context) (string, error) {
	err := errors.New("no Sentinel is running")
	for _, sn := range running(s.Sentinels) {
		var addr string
		if addr, err = s.masterFrom(ctx, sn); err == nil {
			return addr, nil
		}
	}
	return "", fmt.Errorf("redisserver: ask the Sentinels for master %s: %w", s.MasterName, err)
}

// masterFrom asks Sentinel sn for the master's address, waiting at most a
// second for a Sentinel that may be paused.
func (s *Sentinel) masterFrom(ctx context.Context, sn *Server) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	v, err := sn.do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.MasterName)
	if err != nil {
		return "", fmt.Errorf("sentinel %s: %w", sn.Addr, err)
	}
	hp, _ := v.([]any)
	if len(hp) != 2 {
		return "", fmt.Errorf("sentinel %s: unexpected reply %v", sn.Addr, v)
	}
	host, _ := hp[0].(string)
	port, _ := hp[1].(string)
	return net.JoinHostPort(host, port), nil
}

// WaitForNewMaster waits until every running Sentinel reports a master
// other than old and that server says it is a master (role:master), and
// returns it. It returns an error, with the last state seen, when ctx is
// done first.
func (s *Sentinel) WaitForNewMaster(ctx context.Context, old string) (*Server, error) {
	var master *Server
	err := poll(ctx, "wait for a master other than "+old, func(ctx context.Context) error {
		addr := ""
		for _, sn := range running(s.Sentinels) {
			a, err := s.masterFrom(ctx, sn)
			switch {
			case err != nil:
				return err
			case a == old:
				return fmt.Errorf("sentinel %s: master is still %s", sn.Addr, old)
			case addr != "" && a != addr:
				return fmt.Errorf("the Sentinels disagree: %s and %s", addr, a)
			}
			addr = a
		}
		if addr == "" {
			return errors.New("no Sentinel is running")
		}
		m := s.Server(addr)
		if m == nil {
			return fmt.Errorf("the Sentinels report a master %s that is not ours", addr)
		}
		info, err := m.Info(ctx, "replication")
		if err != nil {
			return fmt.Errorf("new master %s: %w", addr, err)
		}
		if role := InfoField(info, "role"); role != "master" {
			return fmt.Errorf("new master %s: role:%s", addr, role)
		}
		master = m
		return nil
	})
	return master, err
}
