package reservation

import (
	"regexp"
	"slices"
	"strings"
)

// Deployment is the kind of Redis deployment that ACLRules writes rules
// for: what a Client sends differs a little between them.
type Deployment int

const (
	// OneServer is one server, or the master of a Sentinel deployment
	// (New, NewWithClient, NewFailover). The Sentinels have users of their
	// own, which these rules do not cover.
	OneServer Deployment = iota
	// ClusterNodes is every node of a Redis Cluster (NewCluster).
	ClusterNodes
	// QuorumServers is every server of a quorum (NewQuorum).
	QuorumServers
)

// ACL holds the rules of the two kinds of Redis users of this library.
type ACL struct {
	// Worker allows everything a Client does: TryLock, Lock (the queue
	// and its turn notices), renewals, Release, the holder watch (client
	// tracking), the release notices, semaphores, sets, ForceRelease,
	// PrimeRestartGuard, Status, List, Ping, WAIT (Options.WaitReplicas),
	// the eviction check (INFO), and the fallback channels a Client
	// subscribes to when the server refuses tracking.
	Worker ACLRule
	// ReadOnly allows Ping, Status, List and INFO, and nothing else:
	// what "reserve status" and "reserve list" need (reserve asks INFO
	// what kind of server it talks to). Its keys are read-only.
	ReadOnly ACLRule
}

// ACLRule is the rule of one Redis user: the arguments of ACL SETUSER that
// follow the user's name, "on" and its password. It starts with resetkeys,
// resetchannels and -@all, so it replaces whatever the user had.
type ACLRule []string

// String returns the rule as one line, for an aclfile ("user <name> on
// #<sha256 of the password> <rule>") or redis-cli. A prefix that holds a
// space does not fit there: give the rule's words as separate arguments.
func (r ACLRule) String() string { return strings.Join(r, " ") }

// ACLRules returns the ACL rules for the users of Clients whose
// Options.Prefix is prefix ("" for DefaultPrefix) on a deployment of kind
// d. The rules are made from the code's own names: the key patterns from
// the prefix and the companion suffixes (keys.go), the commands from the
// scripts' sources and from the list of what the Go code sends (aclCommands).
// The user's name, "on" and password are the caller's:
//
//	ACL SETUSER worker on >secret <rule>
//
// The restart-guard marker ignores the prefix: it is
// "{reservation}:restart-guard" on one server whatever the prefix, and
// "{N}:reservation-restart-guard" for each slot N on a Cluster. Clients
// with another prefix share it: changing its name would let new Clients
// pass the guard that old ones set. Both rules allow it.
//
// Not covered: SELECT (add +select for a database other than 0), a
// Sentinel's own user, and go-redis's optional commands (CLIENT SETINFO,
// CLIENT MAINT_NOTIFICATIONS), whose refusal it ignores. SCRIPT LOAD is
// left out: where it is refused, the scripts go by source (EVAL).
func ACLRules(prefix string, d Deployment) ACL {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	p := globEscape(prefix)
	cluster := d == ClusterNodes

	readKeys := []string{p + "*"}
	for _, s := range []string{fenceSuffix, queueSuffix, leaseSuffix, permitSuffix + "*"} {
		readKeys = append(readKeys, companionPatterns(p, s)...)
	}
	readKeys = append(readKeys, guardPattern(cluster))
	keys := readKeys
	if d == QuorumServers {
		keys = append(slices.Clone(keys), companionPatterns(p, forcedSuffix)...)
	}

	channels := []string{invalidateChannel, "__keyspace@*__:" + p + "*"}
	for _, s := range []string{channelSuffix, turnSuffix} {
		channels = append(channels, companionPatterns(p, s)...)
	}

	var worker, read []string
	for _, c := range aclCommands {
		if c.where == onCluster && !cluster || c.where == offCluster && cluster {
			continue
		}
		worker = append(worker, c.name)
		if c.read {
			read = append(read, c.name)
		}
	}
	worker = append(worker, scriptCommands()...)
	// The scripts publish with the command that publishCommand names.
	worker = append(worker, strings.ToLower((&Client{cluster: cluster}).publishCommand()))

	return ACL{
		Worker:   rule(keys, "~", channels, worker),
		ReadOnly: rule(readKeys, "%R~", nil, read),
	}
}

// rule writes a user's rule: the key patterns, each after keyMark, the
// channels, and the commands, sorted and without repeats.
func rule(keys []string, keyMark string, channels, commands []string) ACLRule {
	r := ACLRule{"resetkeys"}
	for _, k := range keys {
		r = append(r, keyMark+k)
	}
	r = append(r, "resetchannels")
	for _, c := range channels {
		r = append(r, "&"+c)
	}
	r = append(r, "-@all")
	commands = slices.Clone(commands)
	slices.Sort(commands)
	for _, c := range slices.Compact(commands) {
		r = append(r, "+"+c)
	}
	return r
}

// companionPatterns returns the glob patterns of the companions named with
// suffix of the keys that start with p (a prefix, glob-escaped): see
// companion. A key without a hash tag gets "{key}:suffix"; one with a tag,
// or with a "}", gets "{tag}:suffix:key".
func companionPatterns(p, suffix string) []string {
	return []string{"{" + p + "*}:" + suffix, "{*}:" + suffix + ":" + p + "*"}
}

// guardPattern returns the pattern of the restart-guard markers: the one
// marker, or on a Cluster every slot's (see guardKeyFor).
func guardPattern(cluster bool) string {
	g := guardKeyFor("", cluster)
	if !cluster {
		return globEscape(g)
	}
	_, rest, _ := strings.Cut(g, "}")
	return "{*}" + globEscape(rest)
}

// Where a command of aclCommands is sent.
const (
	everywhere = iota
	onCluster  // only to the nodes of a Cluster
	offCluster // never to the nodes of a Cluster
)

// aclCommands are the commands the Go code sends itself (the scripts'
// own commands are read from their sources: see scriptCommands), as ACL
// names them. read marks those that the read-only rule has too: what
// Ping, Status and List send, and INFO.
var aclCommands = []struct {
	name  string
	read  bool
	where int
}{
	{name: "ping", read: true},                            // Ping; the notifier's start; the subscriber's health check
	{name: "time", read: true},                            // Status: the server's clock, for the guard and the queue's leases
	{name: "get", read: true},                             // Status; the watch's reads; ForceRelease reads a semaphore's marker
	{name: "pttl", read: true},                            // Status; a waiter's read that watches its key
	{name: "zrange", read: true},                          // Status: the queue and its leases
	{name: "scan", read: true},                            // List
	{name: "evalsha"},                                     // every script, by digest
	{name: "eval"},                                        // a script the server does not have; ForceRelease's (in MULTI)
	{name: "multi"},                                       // ForceRelease: a semaphore's permits at once
	{name: "exec"},                                        // ends ForceRelease's MULTI
	{name: "set"},                                         // PrimeRestartGuard (SET marker 0 GET)
	{name: "exists"},                                      // the read after a renewal that keeps its keys watched
	{name: "client|id"},                                   // the subscriber's id, for the tracking connection's REDIRECT
	{name: "client|setname"},                              // go-redis names the notifier's connections
	{name: "client|tracking"},                             // the tracking connection (ON REDIRECT ... NOLOOP OPTIN)
	{name: "client|caching"},                              // before each read that watches a key (OPTIN)
	{name: "subscribe"},                                   // __redis__:invalidate; the fallback channels; turn channels off Cluster
	{name: "unsubscribe"},                                 // channels no longer waited for
	{name: "info", read: true},                            // the eviction check (INFO memory); reserve asks a server's kind (INFO server)
	{name: "wait"},                                        // Options.WaitReplicas
	{name: "ssubscribe", where: onCluster},                // sharded release and turn channels
	{name: "sunsubscribe", where: onCluster},              // those no longer waited for
	{name: "cluster|slots", read: true, where: onCluster}, // go-redis reads the slot map
	{name: "asking", read: true, where: onCluster},        // go-redis, on an ASK redirect while a slot moves
}

// aclScripts are the sources of every script a Client runs.
var aclScripts = []string{acquireLua, acquireSetLua, renewLua, releaseLua, forceReleaseLua, raiseFenceLua}

// scriptCallRE matches the command named in a call of a script:
// redis.call('GET', ...), redis.pcall('TIME'), release's call('ZREM', ...).
// A command named by an argument (the publish command) is not matched.
var scriptCallRE = regexp.MustCompile(`call\(\s*['"]([A-Za-z|]+)['"]`)

// scriptCommands returns the commands that the scripts call, in lower
// case, sorted, each once.
func scriptCommands() []string {
	var out []string
	for _, src := range aclScripts {
		for _, m := range scriptCallRE.FindAllStringSubmatch(src, -1) {
			out = append(out, strings.ToLower(m[1]))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
