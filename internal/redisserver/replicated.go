package redisserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// topologyTimeout bounds the start of a topology, whatever ctx says.
const topologyTimeout = time.Minute

// ReplicatedOptions configures StartReplicated.
type ReplicatedOptions struct {
	// Options are those of every server; Dir gets a sub-directory per
	// server ("master", "replica-1", ...).
	Options
	// Replicas is the number of replicas; 0 means 1.
	Replicas int
}

// Replicated is a master and its replicas, started by StartReplicated.
type Replicated struct {
	// Master is the server started as the master.
	Master *Server
	// Replicas are the servers started as its replicas (replicaof).
	Replicas []*Server
}

// StartReplicated starts a master and o.Replicas replicas of it, and waits
// until every replica has synced (master_link_status:up). On error, every
// server it started is killed.
func StartReplicated(ctx context.Context, o ReplicatedOptions) (*Replicated, error) {
	n, err := orDefault("Replicas", o.Replicas, 1)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, topologyTimeout)
	defer cancel()
	return startReplicated(ctx, o.Options, n)
}

func startReplicated(ctx context.Context, o Options, replicas int) (*Replicated, error) {
	master, err := startNode(ctx, o, "master")
	if err != nil {
		return nil, err
	}
	r := &Replicated{Master: master}
	host, port, _ := net.SplitHostPort(master.Addr)
	ro := o
	ro.conf = confLine("replicaof", host, port)
	for i := range replicas {
		s, err := startNode(ctx, ro, fmt.Sprintf("replica-%d", i+1))
		if err != nil {
			r.Kill()
			return nil, err
		}
		r.Replicas = append(r.Replicas, s)
	}
	if err := waitSynced(ctx, r.Master, r.Replicas); err != nil {
		r.Kill()
		return nil, err
	}
	return r, nil
}

// Servers returns the master and the replicas.
func (r *Replicated) Servers() []*Server {
	return append([]*Server{r.Master}, r.Replicas...)
}

// Server returns the server listening on addr, or nil.
func (r *Replicated) Server(addr string) *Server {
	return find(r.Servers(), addr)
}

// Kill kills every server.
func (r *Replicated) Kill() {
	killAll(r.Servers())
}

// orDefault returns n, or def when n is 0, and an error when n < 0.
func orDefault(name string, n, def int) (int, error) {
	switch {
	case n < 0:
		return 0, fmt.Errorf("redisserver: %s = %d, want 0 (the default) or more", name, n)
	case n == 0:
		return def, nil
	}
	return n, nil
}

// startNode starts a server of a topology in the sub-directory name of
// o.Dir.
func startNode(ctx context.Context, o Options, name string) (*Server, error) {
	if o.Dir == "" {
		return nil, errors.New("redisserver: Options.Dir is empty")
	}
	o.Dir = filepath.Join(o.Dir, name)
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("redisserver: %w", err)
	}
	return Start(ctx, o)
}

func find(servers []*Server, addr string) *Server {
	for _, s := range servers {
		if s.Addr == addr {
			return s
		}
	}
	return nil
}

func killAll(servers []*Server) {
	for _, s := range servers {
		if s != nil {
			s.Kill()
		}
	}
}

// running returns the servers that are running.
func running(servers []*Server) []*Server {
	var live []*Server
	for _, s := range servers {
		if s.Pid() != 0 {
			live = append(live, s)
		}
	}
	return live
}

// waitSynced waits until every replica's link to master is up and master
// sees it online.
func waitSynced(ctx context.Context, master *Server, replicas []*Server) error {
	return poll(ctx, "wait for the replicas to sync", func(ctx context.Context) error {
		for _, s := range replicas {
			info, err := s.Info(ctx, "replication")
			if err != nil {
				return fmt.Errorf("replica %s: %w", s.Addr, err)
			}
			if st := InfoField(info, "master_link_status"); st != "up" {
				return fmt.Errorf("replica %s: master_link_status:%s", s.Addr, st)
			}
		}
		return online(ctx, master, len(replicas))
	})
}

// online returns nil when master has n replicas, all online.
func online(ctx context.Context, master *Server, n int) error {
	info, err := master.Info(ctx, "replication")
	if err != nil {
		return fmt.Errorf("master %s: %w", master.Addr, err)
	}
	if got := InfoField(info, "connected_slaves"); got != strconv.Itoa(n) {
		return fmt.Errorf("master %s: %s replicas connected, want %d", master.Addr, got, n)
	}
	for i := range n {
		// slave0:ip=127.0.0.1,port=6380,state=online,offset=...
		if st := InfoField(info, "slave"+strconv.Itoa(i)); !strings.Contains(st, ",state=online,") {
			return fmt.Errorf("master %s: replica %s", master.Addr, st)
		}
	}
	return nil
}

// poll calls check, each time with at most 2 seconds, until it returns nil
// or ctx is done; the error then says what was awaited and check's last
// error.
func poll(ctx context.Context, what string, check func(ctx context.Context) error) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := check(cctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redisserver: %s: %w (last: %v)", what, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
