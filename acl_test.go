package reservation

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis-reservation/reservation/internal/redisserver"
	"github.com/redis-reservation/reservation/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// setUser creates (or replaces) user name, password "pw", with rule on
// each of rdbs.
func setUser(t testing.TB, name string, rule ACLRule, rdbs ...*redis.Client) {
	t.Helper()
	for _, rdb := range rdbs {
		args := append([]any{"ACL", "SETUSER", name, "reset", "on", ">pw"}, toAny(rule)...)
		if err := rdb.Do(context.Background(), args...).Err(); err != nil {
			t.Fatalf("ACL SETUSER %s %v: %v", name, rule, err)
		}
	}
}

// asUser returns the URL u with the user name and password "pw".
func asUser(u, name string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		panic(err)
	}
	parsed.User = url.UserPassword(name, "pw")
	return parsed.String()
}

// without returns rule without its i-th word.
func without(rule ACLRule, i int) ACLRule {
	return append(slices.Clone(rule[:i]), rule[i+1:]...)
}

// elements returns the indexes of the words of rule that grant something:
// every key pattern, channel and command.
func elements(rule ACLRule) []int {
	var out []int
	for i, w := range rule {
		if w != "resetkeys" && w != "resetchannels" && w != "-@all" {
			out = append(out, i)
		}
	}
	return out
}

// The rules name every key, channel and marker of the prefix (hash tags,
// braces and glob characters in names and prefix included), and nothing
// of another prefix; the read-only rule reads them and writes nothing.
func TestACLRulesNames(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	admin := srv.Client(t)
	// ACL DRYRUN answers OK, or a refusal as a plain string.
	dry := func(user string, args ...any) error {
		v, err := admin.Do(ctx, append([]any{"ACL", "DRYRUN", user}, args...)...).Text()
		if err == nil && v != "OK" {
			err = errors.New(v)
		}
		return err
	}
	for _, prefix := range []string{"", "jobs:", "a*b?[c]\\-"} {
		for _, d := range []Deployment{OneServer, ClusterNodes, QuorumServers} {
			rules := ACLRules(prefix, d)
			setUser(t, "worker", rules.Worker, admin)
			setUser(t, "reader", rules.ReadOnly, admin)
			p := cmpOr(prefix, DefaultPrefix)
			cluster := d == ClusterNodes
			publish := (&Client{cluster: cluster}).publishCommand()
			for _, res := range []string{"a", "{t}:a", "a}b", "{}x", "{a", "x:{t}"} {
				key := p + res
				keys := []string{key, companion(key, fenceSuffix), companion(key, queueSuffix),
					companion(key, leaseSuffix), permitKey(key, 1), permitKey(key, 30), guardKeyFor(key, cluster)}
				for _, k := range keys {
					if err := dry("worker", "SET", k, "v"); err != nil {
						t.Errorf("prefix %q, %v: worker may not write %s: %v", prefix, d, k, err)
					}
					if err := dry("reader", "GET", k); err != nil {
						t.Errorf("prefix %q, %v: reader may not read %s: %v", prefix, d, k, err)
					}
					if err := dry("reader", "SET", k, "v"); err == nil {
						t.Errorf("prefix %q, %v: reader may write %s", prefix, d, k)
					}
				}
				forced := companion(key, forcedSuffix)
				if err := dry("worker", "SET", forced, "v"); (err == nil) != (d == QuorumServers) {
					t.Errorf("prefix %q, %v: worker writes %s: %v", prefix, d, forced, err)
				}
				for _, ch := range []string{companion(key, channelSuffix), companion(key, turnSuffix)} {
					if err := dry("worker", publish, ch, "m"); err != nil {
						t.Errorf("prefix %q, %v: worker may not %s to %s: %v", prefix, d, publish, ch, err)
					}
					if err := dry("reader", "SUBSCRIBE", ch); err == nil {
						t.Errorf("prefix %q, %v: reader may subscribe to %s", prefix, d, ch)
					}
				}
				for _, ch := range []string{invalidateChannel, "__keyspace@0__:" + key, "__keyspace@12__:" + key} {
					if err := dry("worker", "SUBSCRIBE", ch); err != nil {
						t.Errorf("prefix %q, %v: worker may not subscribe to %s: %v", prefix, d, ch, err)
					}
				}
				other := "other-" + res
				for _, k := range []string{other, companion(other, fenceSuffix), "x" + key} {
					if err := dry("worker", "GET", k); err == nil {
						t.Errorf("prefix %q, %v: worker may read %s", prefix, d, k)
					}
				}
				if err := dry("worker", publish, companion(other, channelSuffix), "m"); err == nil {
					t.Errorf("prefix %q, %v: worker may publish to another prefix's channel", prefix, d)
				}
			}
		}
	}
	// docs/DESIGN.md shows the rules of the default prefix as they are.
	design, err := os.ReadFile("docs/DESIGN.md")
	if err != nil {
		t.Fatal(err)
	}
	_, acl, _ := strings.Cut(string(design), "\n## ACL\n")
	blocks := strings.Split(acl, "```")
	rules := ACLRules("", OneServer)
	if len(blocks) < 4 || !slices.Equal(strings.Fields(blocks[1]), []string(rules.Worker)) ||
		!slices.Equal(strings.Fields(blocks[3]), []string(rules.ReadOnly)) {
		t.Errorf("the rules in docs/DESIGN.md (ACL) are not those of ACLRules:\n%s\n%s", rules.Worker, rules.ReadOnly)
	}
	// Every script file is read for its commands.
	files, err := filepath.Glob("scripts/*.lua")
	if err != nil || len(files) == 0 {
		t.Fatal(files, err)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(aclScripts, string(src)) {
			t.Errorf("%s is not in aclScripts: its commands are missing from the rules", f)
		}
	}
	if got := scriptCommands(); !slices.Contains(got, "time") || !slices.Contains(got, "zrank") || slices.Contains(got, "publish") {
		t.Errorf("scriptCommands() = %v; want those named in the sources (time, zrank...), and not the publish command, an argument", got)
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// workload is everything a worker does, run by Clients that dial opens:
// each step fails fast, and so does an event that says something was
// refused or failed.
type workload struct {
	dial    func(by string, opt Options) (*Client, error)
	admin   func(key string) *redis.Client // a client of key's server, with every right
	cluster bool
	wait    bool // a Client with Options.WaitReplicas (the server has a replica)
}

// run does the workload under resources that start with id, and returns
// the first failure: a step's, or a refusal or failure that an event told.
func (w workload) run(ctx context.Context, id string) (err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var (
		mu  sync.Mutex
		bad []string
	)
	told := func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(bad) > 0 {
			return errors.New(strings.Join(bad, "; "))
		}
		return nil
	}
	var clients []*Client
	defer func() {
		cancel()
		for _, c := range clients {
			c.Close() // delivers the events still queued
		}
		if terr := told(); err == nil && terr != nil {
			err = fmt.Errorf("events: %w", terr)
		}
	}()
	open := func(by string, opt Options) (*Client, error) {
		opt.TTL, opt.RetryInterval, opt.Logger = time.Second, time.Second, quiet
		opt.OnEvent = func(e Event) {
			switch e.Kind {
			case EventNoPermission, EventRedisError, EventTrackingUnavailable, EventRestartGuard:
			case EventLost:
				if strings.HasSuffix(e.Resource, "-lost") {
					return // taken away on purpose
				}
			default:
				return
			}
			mu.Lock()
			bad = append(bad, fmt.Sprintf("%s of %s: %v", e.Kind, by, e.Err))
			mu.Unlock()
		}
		c, err := w.dial(by, opt)
		if err == nil {
			clients = append(clients, c)
		}
		return c, err
	}
	a, err := open("a", Options{})
	if err != nil {
		return err
	}
	b, err := open("b", Options{})
	if err != nil {
		return err
	}
	nt, err := open("nt", Options{})
	if err != nil {
		return err
	}
	nt.noTracking = true // as where the server refuses tracking
	if err := a.Ping(ctx); err != nil {
		return err
	}
	if _, err := a.PrimeRestartGuard(ctx); err != nil {
		return fmt.Errorf("PrimeRestartGuard: %w", err)
	}
	for _, name := range []string{id + "-r", "{" + id + "}-r"} {
		tagged := strings.HasPrefix(name, "{")
		steps := []struct {
			what string
			do   func() error
		}{
			{"Lock behind a holder of another Client", func() error { return w.handOver(ctx, a, b, name, 0, told) }},
			{"Lock of a semaphore's permit", func() error { return w.handOver(ctx, a, b, name+"-pool", 1, told) }},
			{"Lock without tracking", func() error { return w.handOver(ctx, a, nt, name+"-nt", 0, told) }},
			{"TryLock refused behind a waiter", func() error { return w.behindAWaiter(ctx, a, b, nt, name+"-behind", told) }},
			{"a set", func() error {
				if w.cluster && !tagged {
					return nil // a set's names need one hash tag there
				}
				r, err := a.TryLock(ctx, name+"-x", With(name+"-y"))
				if err != nil {
					return err
				}
				return r.Release(ctx)
			}},
			{"renewals", func() error {
				r, err := a.TryLock(ctx, name+"-renew")
				if err != nil {
					return err
				}
				time.Sleep(600 * time.Millisecond) // TTL 1 s: a renewal every 333 ms
				return r.Release(ctx)
			}},
			{"a foreign delete heard by the holder", func() error {
				r, err := a.TryLock(ctx, name+"-del-lost")
				if err != nil {
					return err
				}
				time.Sleep(50 * time.Millisecond)
				if err := w.admin(r.Key()).Del(ctx, r.Key()).Err(); err != nil {
					return err
				}
				select {
				case <-r.Done():
					return nil
				case <-time.After(time.Second):
					return errors.New("the holder did not hear of the delete within 1 s")
				}
			}},
			{"ForceRelease", func() error {
				r, err := a.TryLock(ctx, name+"-force-lost")
				if err != nil {
					return err
				}
				v, err := b.ForceRelease(ctx, name+"-force-lost")
				if err != nil || v != r.Holder() {
					return fmt.Errorf("ForceRelease = %q, %v; want %q", v, err, r.Holder())
				}
				select {
				case <-r.Done():
					return nil
				case <-time.After(time.Second):
					return errors.New("the holder did not hear of the force release within 1 s")
				}
			}},
			{"WaitReplicas", func() error {
				if !w.wait {
					return nil
				}
				wr, err := open("wr", Options{WaitReplicas: 1, WaitTimeout: 250 * time.Millisecond})
				if err != nil {
					return err
				}
				r, err := wr.TryLock(ctx, name+"-wait")
				if err != nil {
					return err
				}
				return r.Release(ctx)
			}},
			{"List", func() error {
				r, err := a.TryLock(ctx, name+"-list")
				if err != nil {
					return err
				}
				defer r.Release(ctx)
				infos, err := a.List(ctx, "")
				if err != nil {
					return err
				}
				if !slices.ContainsFunc(infos, func(in Info) bool { return in.Holder == r.Holder() }) {
					return fmt.Errorf("List = %v; want %s among them", infos, r.Holder())
				}
				return nil
			}},
		}
		for _, s := range steps {
			if err := s.do(); err != nil {
				return fmt.Errorf("%s, %s: %w", name, s.what, err)
			}
			if err := told(); err != nil {
				return fmt.Errorf("%s, %s: events: %w", name, s.what, err)
			}
		}
	}
	return nil
}

// behindAWaiter has a hold resource while c waits for it in Lock; a TryLock
// of t must then be refused for the waiter, and say that one queues.
func (w workload) behindAWaiter(ctx context.Context, a, c, t *Client, resource string, told func() error) error {
	r, err := a.TryLock(ctx, resource)
	if err != nil {
		return err
	}
	defer r.Release(ctx)
	got := make(chan error, 1)
	go func() {
		r, err := c.Lock(ctx, resource)
		if err == nil {
			err = r.Release(ctx)
		}
		got <- err
	}()
	if err := w.queued(ctx, a.Key(resource), told); err != nil {
		return err
	}
	_, err = t.TryLock(ctx, resource)
	var nerr *NotAcquiredError
	if !errors.As(err, &nerr) || nerr.Queued != 1 {
		return fmt.Errorf("TryLock behind a waiter: %v; want refused, with one queued", err)
	}
	return handedOver(ctx, r, got)
}

// handedOver releases r, whose waiter reports on got, and wants the
// waiter to have it within a second.
func handedOver(ctx context.Context, r *Reservation, got <-chan error) error {
	if err := r.Release(ctx); err != nil {
		return err
	}
	select {
	case err := <-got:
		return err
	case <-time.After(time.Second):
		return errors.New("the waiter did not have it within 1 s of the release")
	}
}

// queued waits until one waiter queues for key, and for at most 2 s.
func (w workload) queued(ctx context.Context, key string, told func() error) error {
	queue := companion(key, queueSuffix)
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if n, err := w.admin(queue).ZCard(ctx, queue).Result(); err != nil || n == 1 {
			return nil
		}
		if err := told(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return errors.New("the waiter did not queue within 2 s")
		}
	}
}

// handOver has a hold resource (a permit of it when limit is 1), and
// shows it in Status, while c waits for it in Lock; a's release must
// reach the waiter within a second.
// told says what events reported refused meanwhile.
func (w workload) handOver(ctx context.Context, a, c *Client, resource string, limit int, told func() error) error {
	var opts []LockOption
	if limit > 0 {
		opts = append(opts, Limit(limit))
	}
	r, err := a.TryLock(ctx, resource, opts...)
	if err != nil {
		return err
	}
	defer r.Release(ctx)
	got := make(chan error, 1)
	go func() {
		r, err := c.Lock(ctx, resource, opts...)
		if err == nil {
			err = r.Release(ctx)
		}
		got <- err
	}()
	if err := w.queued(ctx, a.Key(resource), told); err != nil {
		return err
	}
	info, err := a.Status(ctx, resource)
	if err != nil {
		return err
	}
	if info.Holder != r.Holder() || info.Token == 0 || len(info.Waiters) != 1 || limit > 0 && len(info.Permits) != 1 {
		return fmt.Errorf("Status = %+v; want held by %s, a token, one waiter", info, r.Holder())
	}
	time.Sleep(20 * time.Millisecond) // the waiter's watch or subscription set
	return handedOver(ctx, r, got)
}

// serverWorkload is the workload on one server, as user.
func serverWorkload(master *redisserver.Server, admin *redis.Client, user string, wait bool) workload {
	return workload{
		dial: func(by string, opt Options) (*Client, error) {
			opt.By = by
			return New(asUser(master.URL(), user), &opt)
		},
		admin: func(string) *redis.Client { return admin },
		wait:  wait,
	}
}

// The worker's rule is enough for everything a worker does, and each of its
// words is needed: without it, something fails or is reported refused.
func TestWorkerACLRuleMinimal(t *testing.T) {
	rs := redistest.StartReplicated(t, redisserver.ReplicatedOptions{Replicas: 1})
	admin := redis.NewClient(&redis.Options{Addr: rs.Master.Addr})
	t.Cleanup(func() { admin.Close() })
	ctx := t.Context()
	rule := ACLRules("", OneServer).Worker
	setUser(t, "worker", rule, admin)
	start := time.Now()
	if err := serverWorkload(rs.Master, admin, "worker", true).run(ctx, "full"); err != nil {
		t.Fatalf("under the generated rule: %v", err)
	}
	t.Logf("the workload took %v", time.Since(start))
	eachWordNeeded(t, rule, nil, nil, func(user string, rule ACLRule) { setUser(t, user, rule, admin) },
		func(user string) error { return serverWorkload(rs.Master, admin, user, true).run(ctx, user) })
}

// summary describes infos, less what changes with time (TTLs).
func summary(infos ...Info) string {
	var b strings.Builder
	for _, in := range infos {
		fmt.Fprintf(&b, "%s held=%v holder=%s token=%d waiters=%v limit=%d guard=%v unset=%v permits=",
			in.Resource, in.Held, in.Holder, in.Token, in.Waiters, in.Limit, in.Guard > 0, in.GuardUnset)
		for _, p := range in.Permits {
			fmt.Fprintf(&b, "%d:%s ", p.Number, p.Holder)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// readAll is what "reserve status" and "reserve list" do: INFO server (to
// tell a Cluster from one server), Ping, Status of each resource, List.
func readAll(ctx context.Context, c *Client, resources []string) (string, error) {
	if err := c.rdb.Info(ctx, "server").Err(); err != nil {
		return "", err
	}
	if err := c.Ping(ctx); err != nil {
		return "", err
	}
	var out []Info
	for _, res := range resources {
		in, err := c.Status(ctx, res)
		if err != nil {
			return "", err
		}
		out = append(out, in)
	}
	all, err := c.List(ctx, "")
	if err != nil {
		return "", err
	}
	return summary(out...) + "list:\n" + summary(all...), nil
}

// The read-only rule is enough for Ping, Status and List, each of its
// words is needed, and it acquires nothing: TryLock and Lock fail at once
// with an error that names the refused command.
func TestReadOnlyACLRule(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	admin := srv.Client(t)
	// What there is to see: reservations and permits, plain and hash
	// tagged, with a waiter each.
	opt := Options{By: "holder", TTL: 30 * time.Second, Logger: quiet}
	holder, err := New(srv.URL(), &opt)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	opt.By = "waiter"
	waiter, err := New(srv.URL(), &opt)
	if err != nil {
		t.Fatal(err)
	}
	defer waiter.Close()
	if _, err := holder.PrimeRestartGuard(ctx); err != nil {
		t.Fatal(err)
	}
	resources := []string{"ro", "{ro}-t", "ro-pool", "{ro}-pool"}
	for _, res := range resources {
		var opts []LockOption
		if strings.HasSuffix(res, "pool") {
			opts = append(opts, Limit(1))
		}
		if _, err := holder.TryLock(ctx, res, opts...); err != nil {
			t.Fatal(err)
		}
		go waiter.Lock(ctx, res, opts...) // ends with the test's context
		untilQueued(t, admin, holder.Key(res), 1)
	}
	want, err := readAll(ctx, holder, resources)
	if err != nil {
		t.Fatal(err)
	}
	rule := ACLRules("", OneServer).ReadOnly
	setUser(t, "reader", rule, admin)
	reader, err := New(asUser(srv.URL(), "reader"), &Options{By: "reader", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	got, err := readAll(ctx, reader, resources)
	if err != nil || got != want {
		t.Fatalf("as reader: %s, %v; want\n%s", got, err, want)
	}
	t.Logf("what the reader sees:\n%s", got)
	for _, lock := range []func() error{
		func() error { _, err := reader.TryLock(ctx, "ro-new"); return err },
		func() error {
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			_, err := reader.Lock(lctx, "ro")
			return err
		},
	} {
		start := time.Now()
		err := lock()
		if !errors.Is(err, ErrNoPermission) || !strings.Contains(err.Error(), "'evalsha'") || time.Since(start) > time.Second {
			t.Errorf("acquiring as reader = %v after %v; want at once an error matching ErrNoPermission that names evalsha", err, time.Since(start))
		}
	}
	for n, i := range elements(rule) {
		t.Run(rule[i], func(t *testing.T) {
			user := "reader" + strconv.Itoa(n)
			setUser(t, user, without(rule, i), admin)
			c, err := New(asUser(srv.URL(), user), &Options{By: user, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got, err := readAll(ctx, c, resources)
			if err == nil && got == want {
				t.Fatalf("everything read the same without %s: drop it from the rule", rule[i])
			}
			if err == nil {
				err = errors.New("read other than what there is")
			}
			t.Logf("without %s: %v", rule[i], err)
		})
	}
}

// warnings counts, per Client, the events that say the server refused
// something or tracking is off.
type warnings struct {
	mu   sync.Mutex
	by   map[string][]string
	seen chan struct{}
}

func (w *warnings) hook(by string) func(Event) {
	return func(e Event) {
		if e.Kind != EventNoPermission && e.Kind != EventTrackingUnavailable {
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.by[by] = append(w.by[by], fmt.Sprintf("%s: %v", e.Kind, e.Err))
		select {
		case w.seen <- struct{}{}:
		default:
		}
	}
}

// of returns the warnings of the Client by.
func (w *warnings) of(by string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.by[by])
}

// When the server refuses part of what the library uses, waiters and
// holders fall back to what is allowed, within a bounded delay, and each
// Client says so once; a refused EVALSHA or EVAL fails the call at once,
// naming the command, without retrying it.
func TestACLFallbacks(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	admin := srv.Client(t)
	worker := ACLRules("", OneServer).Worker
	less := func(t *testing.T, command string) string {
		i := slices.Index(worker, command)
		if i < 0 {
			t.Fatalf("%s is not in the worker's rule", command)
		}
		user := strings.NewReplacer("+", "", "|", "-").Replace(command)
		setUser(t, user, without(worker, i), admin)
		return user
	}
	clients := func(t *testing.T, user string, opt Options) (a, b *Client, w *warnings) {
		w = &warnings{by: make(map[string][]string), seen: make(chan struct{}, 1)}
		for _, by := range []string{"a", "b"} {
			o := opt
			o.By, o.Logger, o.OnEvent = by, quiet, w.hook(by)
			c, err := New(asUser(srv.URL(), user), &o)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			if by == "a" {
				a = c
			} else {
				b = c
			}
		}
		if _, err := a.PrimeRestartGuard(ctx); err != nil {
			t.Fatal(err)
		}
		return a, b, w
	}
	// handOver has a hold resource and b wait for it, and returns how long
	// b took to have it after a released it.
	handOver := func(t *testing.T, a, b *Client, resource string, opts ...LockOption) time.Duration {
		r, err := a.TryLock(ctx, resource, opts...)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan error, 1)
		go func() {
			_, err := b.Lock(ctx, resource, opts...)
			got <- err
		}()
		untilQueued(t, admin, a.Key(resource), 1)
		time.Sleep(50 * time.Millisecond) // b's watch or subscription set
		if err := r.Release(ctx); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		select {
		case err := <-got:
			if err != nil {
				t.Fatal(err)
			}
			return time.Since(start)
		case <-time.After(5 * time.Second):
			t.Fatal("the waiter did not have it within 5 s of the release")
			return 0
		}
	}
	// lossHeard has a hold resource, deletes its key behind its back, and
	// returns how long a took to hear of it.
	lossHeard := func(t *testing.T, a *Client, resource string) time.Duration {
		r, err := a.TryLock(ctx, resource)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		if err := admin.Del(ctx, r.Key()).Err(); err != nil {
			t.Fatal(err)
		}
		return waitDone(t, r, 5*time.Second)
	}
	// once checks that each Client said once, in a warning that matches
	// ErrNoPermission, what it lacks (want for Clients a and b).
	once := func(t *testing.T, w *warnings, want map[string]int) {
		time.Sleep(200 * time.Millisecond) // the events are delivered in the background
		for by, n := range want {
			got := w.of(by)
			if len(got) != n {
				t.Errorf("Client %s warned %d times, want %d: %q", by, len(got), n, got)
			}
			for _, m := range got {
				t.Logf("%s: %s", by, m)
			}
		}
	}

	t.Run("CLIENT TRACKING refused", func(t *testing.T) {
		opt := Options{TTL: 3 * time.Second}
		a, b, w := clients(t, less(t, "+client|tracking"), opt)
		woken := handOver(t, a, b, "no-tracking")
		// Release notices and turn notices: at once.
		if woken > 300*time.Millisecond {
			t.Errorf("the waiter had it %v after the release; want at once (release and turn notices)", woken)
		}
		// No keyspace events on this server: the next renewal finds out.
		heard := lossHeard(t, a, "no-tracking-loss")
		if heard > opt.TTL/3+500*time.Millisecond {
			t.Errorf("the holder heard of the delete after %v; want by its next renewal (%v)", heard, opt.TTL/3)
		}
		t.Logf("waiter woken %v after the release; holder told %v after the delete", woken, heard)
		once(t, w, map[string]int{"a": 1, "b": 1})
	})

	t.Run("SUBSCRIBE refused", func(t *testing.T) {
		opt := Options{TTL: 3 * time.Second, RetryInterval: 200 * time.Millisecond}
		a, b, w := clients(t, less(t, "+subscribe"), opt)
		woken := handOver(t, a, b, "no-subscribe")
		// No notice at all: the waiter's timer, RetryInterval.
		if woken > opt.RetryInterval+300*time.Millisecond {
			t.Errorf("the waiter had it %v after the release; want within RetryInterval (%v)", woken, opt.RetryInterval)
		}
		heard := lossHeard(t, a, "no-subscribe-loss")
		if heard > opt.TTL/3+500*time.Millisecond {
			t.Errorf("the holder heard of the delete after %v; want by its next renewal (%v)", heard, opt.TTL/3)
		}
		t.Logf("waiter woken %v after the release; holder told %v after the delete", woken, heard)
		once(t, w, map[string]int{"a": 1, "b": 1})
	})

	t.Run("PUBLISH refused", func(t *testing.T) {
		opt := Options{TTL: 3 * time.Second, RetryInterval: 200 * time.Millisecond}
		a, b, w := clients(t, less(t, "+publish"), opt)
		// A semaphore's waiters are woken by release notices, which are
		// not published: the waiter's timer, RetryInterval.
		woken := handOver(t, a, b, "no-publish", Limit(1))
		if woken > opt.RetryInterval+300*time.Millisecond {
			t.Errorf("the semaphore's waiter had it %v after the release; want within RetryInterval (%v)", woken, opt.RetryInterval)
		}
		// A reservation's waiter is woken by tracking, at once.
		plain := handOver(t, a, b, "no-publish-plain")
		if plain > 300*time.Millisecond {
			t.Errorf("the waiter had it %v after the release; want at once (tracking)", plain)
		}
		heard := lossHeard(t, a, "no-publish-loss")
		if heard > 300*time.Millisecond {
			t.Errorf("the holder heard of the delete after %v; want at once (tracking)", heard)
		}
		t.Logf("semaphore's waiter woken %v, reservation's %v after the release; holder told %v after the delete", woken, plain, heard)
		// b released nothing: it holds both.
		once(t, w, map[string]int{"a": 1, "b": 0})
	})

	// rejected returns how many calls of command the server refused.
	rejected := func(t *testing.T, command string) int {
		info, err := admin.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.SplitSeq(info, "\r\n") {
			if rest, ok := strings.CutPrefix(line, "cmdstat_"+command+":"); ok {
				for field := range strings.SplitSeq(rest, ",") {
					if v, ok := strings.CutPrefix(field, "rejected_calls="); ok {
						n, _ := strconv.Atoi(v)
						return n
					}
				}
			}
		}
		return 0
	}
	for _, command := range []string{"evalsha", "eval"} {
		t.Run(strings.ToUpper(command)+" refused", func(t *testing.T) {
			// A server without the scripts: EVALSHA answers NOSCRIPT.
			if err := admin.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			a, _, _ := clients(t, less(t, "+"+command), Options{})
			before := rejected(t, command)
			for _, lock := range []func(context.Context) error{
				func(ctx context.Context) error { _, err := a.TryLock(ctx, "no-"+command); return err },
				func(ctx context.Context) error { _, err := a.Lock(ctx, "no-"+command); return err },
			} {
				lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				start := time.Now()
				err := lock(lctx)
				cancel()
				took := time.Since(start)
				if !errors.Is(err, ErrNoPermission) || !strings.Contains(err.Error(), "'"+command+"'") || took > time.Second {
					t.Errorf("acquiring without %s = %v after %v; want at once an error matching ErrNoPermission that names %s", command, err, took, command)
				}
				t.Logf("after %v: %v", took, err)
			}
			if command == "eval" {
				// ForceRelease runs its script by source, in a MULTI: the
				// refusal names EVAL, not the transaction's EXECABORT.
				if _, err := a.ForceRelease(ctx, "no-eval"); !errors.Is(err, ErrNoPermission) || !strings.Contains(err.Error(), "'eval'") {
					t.Errorf("ForceRelease without eval = %v; want an error matching ErrNoPermission that names eval", err)
				}
			}
			// Their give-backs run in the background: wait until the count
			// holds still for 300 ms (a retry loop never would), then for
			// a second more.
			sent := rejected(t, command) - before
			for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
				time.Sleep(300 * time.Millisecond)
				now := rejected(t, command) - before
				if now == sent {
					break
				}
				sent = now
			}
			time.Sleep(time.Second)
			if later := rejected(t, command) - before; later != sent || sent == 0 {
				t.Errorf("%d %s refused by the two calls, %d a second later; want the same, not a retry loop", sent, command, later)
			}
			t.Logf("%d %s refused in all", sent, command)
		})
	}
}

// On a Cluster, the cluster's rule is enough for the workload, and each of
// its words that the one-server rule lacks is needed but ASKING (sent only
// while a slot moves).
func TestClusterACLRule(t *testing.T) {
	cl := redistest.StartCluster(t, redisserver.ClusterOptions{})
	ctx := t.Context()
	admin := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	t.Cleanup(func() { admin.Close() })
	var nodes []*redis.Client
	for _, s := range cl.Servers() {
		nc := redis.NewClient(&redis.Options{Addr: s.Addr})
		t.Cleanup(func() { nc.Close() })
		nodes = append(nodes, nc)
	}
	work := func(user string) workload {
		return workload{
			dial: func(by string, opt Options) (*Client, error) {
				opt.By = by
				return NewCluster(&redis.ClusterOptions{Addrs: cl.Addrs(), Username: user, Password: "pw"}, &opt)
			},
			admin: func(key string) *redis.Client {
				m, err := admin.MasterForKey(ctx, key)
				if err != nil {
					panic(err)
				}
				return m
			},
			cluster: true,
		}
	}
	// refused resets the nodes' statistics, runs the workload as user, and
	// returns its error, or else the commands that were refused: go-redis
	// does without some quietly (COMMAND, whose refusal it retries on
	// every call). Not counted: go-redis's optional hellos, whose refusal
	// it ignores once, and SCRIPT LOAD, left out of the rule on purpose
	// (the scripts then go by source).
	refused := func(user string) error {
		for _, nc := range nodes {
			if err := nc.ConfigResetStat(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
		if err := work(user).run(ctx, user); err != nil {
			return err
		}
		var out []string
		for _, nc := range nodes {
			stats, err := nc.Info(ctx, "commandstats").Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(stats, "\n") {
				name, fields, _ := strings.Cut(strings.TrimSpace(line), ":")
				if !strings.HasPrefix(name, "cmdstat_") || strings.Contains(fields, "rejected_calls=0,") ||
					slices.Contains([]string{"cmdstat_client|setinfo", "cmdstat_client|maint_notifications", "cmdstat_script|load"}, name) {
					continue
				}
				out = append(out, name+" ("+fields+")")
			}
		}
		if len(out) > 0 {
			return fmt.Errorf("refused: %s", strings.Join(slices.Compact(out), ", "))
		}
		return nil
	}
	rule := ACLRules("", ClusterNodes).Worker
	setUser(t, "worker", rule, nodes...)
	if err := refused("worker"); err != nil {
		t.Fatalf("under the generated rule: %v", err)
	}
	// The one-server rule's words are shown needed on one server.
	eachWordNeeded(t, rule, ACLRules("", OneServer).Worker, map[string]string{"+asking": "sent only on an ASK redirect, while a slot moves"},
		func(user string, rule ACLRule) { setUser(t, user, rule, nodes...) }, refused)
}

// eachWordNeeded checks that each word of rule is needed, but those of
// shown (shown needed elsewhere) and those skip gives a reason for: for
// each, a user without it (set makes it) makes run fail.
func eachWordNeeded(t *testing.T, rule, shown ACLRule, skip map[string]string, set func(user string, rule ACLRule), run func(user string) error) {
	t.Helper()
	for n, i := range elements(rule) {
		if slices.Contains(shown, rule[i]) {
			continue
		}
		t.Run(rule[i], func(t *testing.T) {
			if why, ok := skip[rule[i]]; ok {
				t.Skip(why)
			}
			user := "less" + strconv.Itoa(n)
			set(user, without(rule, i))
			err := run(user)
			if err == nil {
				t.Fatalf("everything worked without %s: drop it from the rule", rule[i])
			}
			t.Logf("without %s: %v", rule[i], err)
		})
	}
}

// On the servers of a quorum, the quorum's rule is enough, and the
// force-release records it adds are needed.
func TestQuorumACLRule(t *testing.T) {
	servers := redistest.StartMasters(t, 3)
	ctx := t.Context()
	var admins []*redis.Client
	for _, s := range servers {
		admins = append(admins, s.Client(t))
	}
	run := func(user string) error {
		var (
			mu  sync.Mutex
			bad []string
		)
		var addrs []string
		for _, s := range servers {
			addrs = append(addrs, asUser(s.URL(), user))
		}
		open := func(by string) *Client {
			c, err := NewQuorum(addrs, &Options{By: by, TTL: time.Second, Logger: quiet, OnEvent: func(e Event) {
				switch e.Kind {
				case EventNoPermission, EventRedisError, EventTrackingUnavailable:
				case EventLost, EventServerFailed:
					if strings.HasSuffix(e.Resource, "-lost") {
						return
					}
				default:
					return
				}
				mu.Lock()
				bad = append(bad, fmt.Sprintf("%s of %s: %v", e.Kind, by, e.Err))
				mu.Unlock()
			}})
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		a, b := open("a"), open("b")
		err := func() error {
			if _, err := a.PrimeRestartGuard(ctx); err != nil {
				return err
			}
			for _, name := range []string{user + "-lost", "{" + user + "}-lost"} {
				r, err := a.TryLock(ctx, name)
				if err != nil {
					return err
				}
				got := make(chan *Reservation, 1)
				go func() {
					r, _ := b.Lock(ctx, name)
					got <- r
				}()
				time.Sleep(50 * time.Millisecond)
				if err := r.Release(ctx); err != nil {
					return err
				}
				var rb *Reservation
				select {
				case rb = <-got:
				case <-time.After(time.Second):
					return errors.New("the waiter did not have it within 1 s of the release")
				}
				if rb == nil {
					return errors.New("the waiter did not have it")
				}
				if in, err := a.Status(ctx, name); err != nil || in.Holder != rb.Holder() {
					return fmt.Errorf("Status = %+v, %v; want held by %s", in, err, rb.Holder())
				}
				if v, err := a.ForceRelease(ctx, name); err != nil || v != rb.Holder() {
					return fmt.Errorf("ForceRelease = %q, %v; want %q", v, err, rb.Holder())
				}
				select {
				case <-rb.Done():
				case <-time.After(time.Second):
					return errors.New("the holder did not hear of the force release within 1 s")
				}
			}
			_, err := a.List(ctx, "")
			return err
		}()
		a.Close()
		b.Close()
		mu.Lock()
		defer mu.Unlock()
		if err == nil && len(bad) > 0 {
			err = errors.New(strings.Join(bad, "; "))
		}
		return err
	}
	rule := ACLRules("", QuorumServers).Worker
	setUser(t, "worker", rule, admins...)
	if err := run("worker"); err != nil {
		t.Fatalf("under the generated rule: %v", err)
	}
	eachWordNeeded(t, rule, ACLRules("", OneServer).Worker, nil,
		func(user string, rule ACLRule) { setUser(t, user, rule, admins...) }, run)
}

// A quorum whose servers give the one-server rule (no force-release
// record) still takes back a part lost on one server, and says once that
// it does so without the record.
func TestQuorumRepairUnderOneServerRule(t *testing.T) {
	servers := redistest.StartMasters(t, 3)
	ctx := t.Context()
	var admins []*redis.Client
	addrs := make([]string, len(servers))
	for i, s := range servers {
		admins = append(admins, s.Client(t))
		addrs[i] = asUser(s.URL(), "worker")
	}
	setUser(t, "worker", ACLRules("", OneServer).Worker, admins...)
	var (
		mu     sync.Mutex
		denied []string
	)
	c, err := NewQuorum(addrs, &Options{By: "a", TTL: 30 * time.Second, Logger: quiet, OnEvent: func(e Event) {
		if e.Kind == EventNoPermission {
			mu.Lock()
			denied = append(denied, e.Err.Error())
			mu.Unlock()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.PrimeRestartGuard(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := c.TryLock(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	<-r.lateDone // every part joined: one deletion leaves a majority
	for round := range 2 {
		if err := admins[round].Del(ctx, r.Key()).Err(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(3 * time.Second)
		for admins[round].Get(ctx, r.Key()).Val() != r.Holder() {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the part deleted on server %d was not taken back", round, round)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := r.Err(); err != nil {
		t.Fatalf("lost: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(denied) != 1 || !strings.Contains(denied[0], "{reservation-job}:forced") {
		t.Errorf("permission-denied events: %q; want one, naming {reservation-job}:forced", denied)
	}
}
