package main

// mutant is one deliberate break: text replacements in the repository, and
// the tests that must fail with them.
type mutant struct {
	name  string
	why   string
	edits []edit
	tests []tests
}

// alone reports whether m's tests must run with no other mutant's beside
// them: those of the fault scenarios (the faults module's own package).
func (m mutant) alone() bool {
	for _, t := range m.tests {
		if t.module == "faults" && t.pkg == "." {
			return true
		}
	}
	return false
}

// edit replaces old, which must be found exactly once in file, by new.
type edit struct{ file, old, new string }

// tests are the tests of a package to run: go test -run run pkg, in
// module (the folder of its go.mod, "." for the library's).
type tests struct {
	module, pkg, run string
	// count, when above 1, runs them that many times (any failure
	// catches the mutant): for a break that shows only when a deadline
	// falls in the middle of a read.
	count int
}

// root returns the tests matching run in the library's own package.
func root(run string) tests { return tests{module: ".", pkg: ".", run: run} }

// The mutants. Each later piece of work adds its own.
var mutants = []mutant{
	{
		name:  "release-without-owner-check",
		why:   "the release script deletes the key whoever holds it",
		edits: []edit{{"scripts/release.lua", "if redis.pcall('GET', key) == ARGV[1] then", "if redis.pcall('GET', key) then"}},
		tests: []tests{root("^(TestReleaseNotOursRefused|TestLockContention)$")},
	},
	{
		name:  "renew-without-compare",
		why:   "the renew script extends keys that are not ours",
		edits: []edit{{"scripts/renew.lua", "if redis.pcall('GET', KEYS[i]) == ARGV[i] then", "if true then"}},
		tests: []tests{root("^TestRenewScriptLeavesOthersAlone$")},
	},
	{
		name:  "restart-guard-off",
		why:   "the acquire script never checks the restart-guard marker",
		edits: []edit{{"scripts/acquire.lua", "local past = guard <= 0 or (set_ms ~= nil and set_ms + guard <= now_ms)", "local past = true"}},
		tests: []tests{root("^TestRestartGuard$")},
	},
	{
		name:  "restart-guard-skipped-when-free",
		why:   "the acquire script's path for a free key that nobody queues for takes it while the restart guard runs",
		edits: []edit{{"scripts/acquire.lua", "if limit == 0 and past then", "if limit == 0 then"}},
		tests: []tests{root("^TestRestartGuard$")},
	},
	{
		name:  "free-key-taken-past-the-queue",
		why:   "the acquire script's path for a free key takes it even when others queue: TryLock and a new waiter jump the queue",
		edits: []edit{{"scripts/acquire.lua", "  if not (places and places[1]) then\n", "  if true then\n"}},
		tests: []tests{root("^(TestQueueTryLockAndDeadWaiter|TestQueueServesInArrivalOrder)$")},
	},
	{
		name:  "release-queue-part-skipped",
		why:   "the release script skips the queue's part whenever it reads the queue: no waiter is told its turn or handed the key",
		edits: []edit{{"scripts/release.lua", "if not places.err and not places[1] then", "if not places.err then"}},
		tests: []tests{root("^(TestQueueWaiterLeaves|TestReleaseHandsOverToAnotherClientsWaiter)$")},
	},
	{
		name:  "no-drift-margin",
		why:   "the local deadline is the send time plus the whole TTL",
		edits: []edit{{"options.go", "return o.TTL/100 + o.DriftMargin", "return 0"}},
		tests: []tests{root("^(TestScheduleDeclaresLossAtDeadline|TestLossWhenRedisStops|TestLossWhenRedisHangs)$")},
	},
	{
		name: "tracking-invalidations-ignored",
		why:  "the notifier drops the keys of client-tracking invalidations",
		edits: []edit{{"notifier.go", `			for _, key := range m.PayloadSlice {
				n.notify(key)
			}`, `			for range m.PayloadSlice {
			}`}},
		tests: []tests{root("^(TestHolderHearsForeignChange|TestWaiterWokenByForeignDelete)$")},
	},
	{
		name:  "release-notice-not-published",
		why:   "the release script publishes no notice",
		edits: []edit{{"scripts/release.lua", "local published = redis.pcall(ARGV[3], ARGV[2], key)", "local published = 1"}},
		tests: []tests{root("^TestWaiterWokenByRelease$")},
	},
	{
		name: "lifo-queue",
		why:  "a Client's waiters of one key are served last come, first served",
		edits: []edit{{"notifier.go", "i := slices.IndexFunc(kw.queue, func(q *waiter) bool { return q.turn == nil })",
			"i := -1\n\tfor j, q := range kw.queue {\n\t\tif q.turn == nil {\n\t\t\ti = j\n\t\t}\n\t}"}},
		tests: []tests{root("^TestWaitersQueueFairly$")},
	},
	{
		name: "ring-renewals-skipped",
		why:  "reservations on a Ring are never renewed",
		edits: []edit{{"heartbeat.go", `		for _, r := range batch {
			groups = append(groups, []*Reservation{r})
		}
		return groups`, `		return nil`}},
		tests: []tests{root("^TestRingRenewals$")},
	},
	{
		name:  "tokens-without-server-time",
		why:   "the next token is last + 1, which goes back when the server loses its data",
		edits: []edit{{"scripts/acquire.lua", "  if last >= now_us then\n    token = last + 1", "  if true then\n    token = last + 1"}},
		tests: []tests{root("^TestTokensGrowAcrossDataLoss$")},
	},
	{
		name:  "token-text-unpadded",
		why:   "the fencing key holds the clock's seconds then its microseconds without their leading zeros: a smaller number than the token",
		edits: []edit{{"scripts/acquire.lua", "text = t[1] .. string.sub('00000' .. t[2], -6)", "text = t[1] .. t[2]"}},
		tests: []tests{root("^TestFenceKeyHoldsTheToken$")},
	},
	{
		name:  "token-text-of-the-clock",
		why:   "after a later token, the fencing key is written with the clock's time, not with the token issued",
		edits: []edit{{"scripts/acquire.lua", "    text = string.format('%.0f', token)", "    text = t[1] .. string.sub('00000' .. t[2], -6)"}},
		tests: []tests{root("^TestFenceKeyHoldsTheToken$")},
	},
	{
		name:  "foreign-fence-overwritten",
		why:   "a string that is not a token at the fencing key is taken for 0 and overwritten",
		edits: []edit{{"scripts/acquire.lua", "  return tonumber(last)\n", "  return tonumber(last) or 0\n"}},
		tests: []tests{root("^FuzzForeignValue$")},
	},
	{
		name: "holder-watch-off",
		why:  "a change to a held key wakes its waiters but is never checked for its holder",
		edits: []edit{{"notifier.go", `		if kw.holder != nil {
			n.verify[key] = true
			n.kickLocked()
		}`, ``}},
		tests: []tests{root("^TestHolderHearsForeignChange$")},
	},
	{
		name:  "tracking-without-noloop",
		why:   "our own renewals invalidate our watches and wake the holder",
		edits: []edit{{"notifier.go", `"REDIRECT", id, "NOLOOP", "OPTIN")`, `"REDIRECT", id, "OPTIN")`}},
		tests: []tests{root("^TestOwnRenewalsDoNotWakeTheHolder$")},
	},
	{
		name:  "renewal-does-not-rewatch",
		why:   "renewals are not followed by a read of their keys, so NOLOOP leaves them unwatched",
		edits: []edit{{"notifier.go", "\t\tp.Do(ctx, \"CLIENT\", \"CACHING\", \"YES\")\n\t\t*exists = p.Exists(ctx, keys...)\n", ""}},
		tests: []tests{root("^TestOwnRenewalsDoNotWakeTheHolder$")},
	},
	{
		name:  "rearm-off",
		why:   "a replaced notifier connection is not armed again",
		edits: []edit{{"notifier.go", "\tn.rearm = true\n\tn.gen++\n", "\tn.gen++\n"}},
		tests: []tests{root("^TestNotifierConnectionKilled$")},
	},
	{
		name:  "close-does-not-wait-for-calls",
		why:   "Close closes the pool under acquisitions still running",
		edits: []edit{{"client.go", "\tc.ops.Wait()\n", ""}},
		// The pool closes under a call in the middle of its round trip
		// only now and then: three runs.
		tests: []tests{{module: ".", pkg: ".", run: "^TestCloseUnderLoadLeavesNothing$", count: 3}},
	},
	{
		name:  "late-acquire-handed-out",
		why:   "an acquire answered after its local deadline is handed out",
		edits: []edit{{"client.go", "if !time.Now().Before(r.deadline) {", "if false {"}},
		tests: []tests{root("^TestAcquireAnsweredAfterDeadline$")},
	},
	{
		name: "abandoned-acquire-kept",
		why:  "an acquire abandoned by its context is never given back",
		edits: []edit{{"client.go", `			if res, err := cmd.Slice(); err != nil || len(res) > 0 && res[0] == int64(1) || mode == waitQueue {
				c.giveBack(key, value, limit)
			}`, `			_ = mode`}},
		tests: []tests{root("^TestAbandonedAcquireGivenBack$")},
	},
	{
		name: "release-after-loss-deletes-any",
		why:  "a Release after a loss deletes whoever holds the key",
		edits: []edit{{"reservation.go", `		c.giveBack(r.key, r.value, 0)
	}
	return err`, `		_ = forceReleaseScript.Run(ctx, c.rdb, []string{r.key}, companion(r.key, channelSuffix)).Err()
	}
	return err`}},
		tests: []tests{root("^TestLossBehindItsBack$")},
	},
	{
		name:  "eval-fallback-off",
		why:   "pipelined renewals that cannot SCRIPT LOAD are not sent as EVAL",
		edits: []edit{{"scripts.go", "c.cmd = c.script.Eval(ctx, p, c.keys, c.args...)", "_ = c"}},
		tests: []tests{root("^TestRenewalsWithoutScriptLoad$")},
	},
	{
		name:  "release-notice-required",
		why:   "a refused release notice fails the release script after its DEL",
		edits: []edit{{"scripts/release.lua", "local published = redis.pcall(ARGV[3], ARGV[2], key)", "local published = redis.call(ARGV[3], ARGV[2], key)"}},
		tests: []tests{root("^TestUserWithoutChannels$")},
	},
	{
		name:  "eviction-not-checked",
		why:   "the server's eviction policy is never read",
		edits: []edit{{"notifier.go", "\tn.checkEviction(ctx)\n\tevictionCheck", "\tevictionCheck"}},
		tests: []tests{root("^TestEvictionRiskReported$")},
	},
	{
		name:  "renewals-not-batched",
		why:   "renew scripts carry 5 keys each instead of 500",
		edits: []edit{{"heartbeat.go", "const renewChunk = 500", "const renewChunk = 5"}},
		tests: []tests{root("^TestHeartbeatBatches$")},
	},
	{
		name:  "renew-script-deny-oom",
		why:   "the renew script gains a #!lua header without allow-oom, which a full server refuses",
		edits: []edit{{"scripts/renew.lua", "-- renew: extend every reservation that is still ours.\n", "#!lua\n-- renew: extend every reservation that is still ours.\n"}},
		tests: []tests{root("^TestNoEvictionUnderFullMemory$")},
	},
	{
		name:  "guard-reported-per-attempt",
		why:   "the restart guard is reported at every refused attempt",
		edits: []edit{{"events.go", "\tif time.Now().Before(ev.until[key]) {", "\tif false {"}},
		tests: []tests{root("^TestGuardReportedOncePerPeriod$")},
	},
	{
		name:  "sentinel-master-unnamed",
		why:   "errors through a Sentinel client say FailoverClient",
		edits: []edit{{"client.go", "\t\t\tr.AddHook(masterHook{c})\n", ""}},
		tests: []tests{root("^TestSentinelErrorsNameTheMaster$")},
	},
	{
		name:  "maxclients-unexplained",
		why:   "a connection closed by a full server is reported as a broken pipe only",
		edits: []edit{{"explain.go", "\tif err == nil || !brokenConn(err) {", "\tif true {"}},
		tests: []tests{root("^TestMaxClientsExplained$")},
	},
	{
		name:  "cli-run-ignores-loss",
		why:   "reserve run never looks at its reservation's Done: a lost reservation leaves the command running",
		edits: []edit{{"cmd/reserve/internal/cli/run.go", "done   = r.Done()", "done   = make(<-chan struct{})"}},
		tests: []tests{{module: "cmd/reserve", pkg: "./internal/cli", run: "^(TestRunLost|TestRunReleaseForce)$"}},
	},
	{
		name:  "cli-no-wait-waits",
		why:   "reserve run --no-wait waits for a held resource like a plain run",
		edits: []edit{{"cmd/reserve/internal/cli/run.go", "\tcase f.noWait:\n", "\tcase false && f.noWait:\n"}},
		tests: []tests{{module: "cmd/reserve", pkg: "./internal/cli", run: "^TestRunNoWaitWhileHeld$"}},
	},
	{
		name:  "cli-guard-sentence-silent",
		why:   "reserve says nothing when the restart guard holds an acquisition back",
		edits: []edit{{"cmd/reserve/internal/cli/events.go", "\t\t\ta.notes.say(noteGuard, guardSentence(where, kind, e.Duration, f.primeCommand(a, addr)))\n", ""}},
		tests: []tests{{module: "cmd/reserve", pkg: "./internal/cli", run: "^TestRestartGuardSentence$"}},
	},
	{
		name:  "cli-zero-ttl-accepted",
		why:   "reserve run --ttl 0 runs with the default TTL instead of a usage error",
		edits: []edit{{"cmd/reserve/internal/cli/flags.go", `zeroFlag(f.cmd, "ttl", f.ttl,`, `zeroFlag(f.cmd, "ttl", 1,`}},
		tests: []tests{{module: "cmd/reserve", pkg: "./internal/cli", run: "^TestUsageErrors$"}},
	},
	{
		name:  "cli-demo-wake-unchecked",
		why:   "the demo passes its wake-up check however late the waiters woke",
		edits: []edit{{"cmd/reserve/internal/cli/demo.go", `check(woke, "%s", wakeups)`, `check(true, "%s", wakeups)`}},
		tests: []tests{{module: "cmd/reserve", pkg: "./internal/cli", run: "^TestDemo$"}},
	},
	{
		name: "cli-wakeups-off",
		why:  "nothing pushes a release to a waiting reserve (tracking invalidations dropped, no release notice, no turn told to the queue's head, no handover told)",
		edits: []edit{
			{"notifier.go", `			for _, key := range m.PayloadSlice {
				n.notify(key)
			}`, `			for range m.PayloadSlice {
			}`},
			{"scripts/release.lua", "local published = redis.pcall(ARGV[3], ARGV[2], key)", "local published = 1"},
			{"scripts/release.lua", "    redis.pcall(ARGV[3], ARGV[4], now)\n", ""},
			{"scripts/release.lua", "    redis.pcall(ARGV[3], ARGV[4], head .. '\\t' .. string.format('%.0f', token) .. '\\t' .. string.format('%.0f', ends))\n", ""},
		},
		tests: []tests{{module: "cmd/reserve", pkg: "./internal/cli", run: "^(TestRunWaitsForRelease|TestDemo)$"}},
	},
	{
		name:  "history-excuse-unbounded",
		why:   "the history checker excuses an overlap after a suspension or revocation however late the old holder reports its loss",
		edits: []edit{{"faults/history/history.go", "\t\tif e.From < acquired && hd.End != 0 && hd.End <= e.Until {", "\t\tif e.From < acquired {"}},
		tests: []tests{{module: "faults", pkg: "./history", run: "^TestCheck$"}},
	},
	{
		name:  "history-crash-ends-at-release-intent",
		why:   "the history checker ends a holding killed while it released at its acquisition, not when the release began",
		edits: []edit{{"faults/history/history.go", "hd.End = hd.Releasing", "hd.End = hd.Acquired"}},
		tests: []tests{{module: "faults", pkg: "./history", run: "^TestCheck$"}},
	},
	{
		name:  "history-unknown-passes",
		why:   "porcupine running out of time answers ok",
		edits: []edit{{"faults/history/porcupine.go", `return fmt.Sprintf("unknown (porcupine did not finish within %v)", timeout)`, `return "ok"`}},
		tests: []tests{{module: "faults", pkg: "./history", run: "^TestLinearizableUnknownFails$"}},
	},
	{
		name:  "history-revoked-release-passes",
		why:   "the history checker accepts a release that succeeded after the holder's key was revoked",
		edits: []edit{{"faults/history/history.go", "if hd.Revoked && hd.Release != nil && hd.Release.Outcome == OutcomeOK {", "if false {"}},
		tests: []tests{{module: "faults", pkg: "./history", run: "^TestCheck$"}},
	},
	{
		name: "history-unrecorded-validity-passes",
		why:  "the history checker takes a release that found the key gone, with no validity recorded, for one past its deadline",
		edits: []edit{{"faults/history/history.go", "\tif rel.Validity == nil || rel.Sent == 0 || rel.Reply == 0 {\n",
			"\tif rel.Validity == nil || rel.Sent == 0 || rel.Reply == 0 {\n\t\treturn Violation{}, false\n\t}\n\tif false {\n"}},
		tests: []tests{{module: "faults", pkg: "./history", run: "^TestCheck$"}},
	},
	{
		name:  "history-zero-token-passes",
		why:   "the history checker accepts a token of 0 (not recorded)",
		edits: []edit{{"faults/history/history.go", "if hd.Token <= 0 {", "if hd.Token < 0 {"}},
		tests: []tests{{module: "faults", pkg: "./history", run: "^TestCheck$"}},
	},
	{
		name:  "history-end-before-acquire-passes",
		why:   "the history checker accepts a release or loss recorded before its acquire returned",
		edits: []edit{{"faults/history/history.go", "if e.Kind != Revoked && (e.At < hd.Acquired || e.Kind == Released && e.Sent != 0 && e.Sent < hd.Acquired) {", "if false {"}},
		tests: []tests{{module: "faults", pkg: "./history", run: "^TestCheck$"}},
	},
	{
		name:  "history-fifo-overtaken-passes",
		why:   "the history checker accepts a waiter overtaken by a Lock call begun after its place in the queue was taken",
		edits: []edit{{"faults/history/history.go", "case a.Outcome == OutcomeAcquired && a.hd.Token > b.hd.Token:", "case false:"}},
		tests: []tests{{module: "faults", pkg: "./history", run: "^TestCheckFIFO$"}},
	},
	{
		name:  "history-semaphore-holders-off-by-one",
		why:   "the history checker accepts N+1 holders of a semaphore of N permits at once",
		edits: []edit{{"faults/history/history.go", "\t\tif len(held) >= n {", "\t\tif len(held) > n {"}},
		tests: []tests{{module: "faults", pkg: "./history", run: "^TestCheckSemaphore$"}},
	},
	{
		name:  "history-model-permits-past-limit",
		why:   "porcupine's lock model lets N+1 holders hold N permits",
		edits: []edit{{"faults/history/porcupine.go", "s.count >= in.limit", "s.count > in.limit"}},
		tests: []tests{{module: "faults", pkg: "./history", run: "^TestCheckSemaphore$"}},
	},
	{
		name:  "history-semaphore-token-order-unchecked",
		why:   "the history checker accepts a semaphore's token lower than one acquired before its call",
		edits: []edit{{"faults/history/history.go", "if last != nil && b.Token <= last.Token {", "if false {"}},
		tests: []tests{{module: "faults", pkg: "./history", run: "^TestCheckSemaphore$"}},
	},
	{
		name:  "events-delivered-inline",
		why:   "events reach OnEvent and the log on the goroutine that emits them (the heartbeat): a hook that blocks stalls renewals",
		edits: []edit{{"events.go", "\tif ev.stopped {\n\t\tev.mu.Unlock()\n\t\tc.deliver(e)", "\tif true {\n\t\tev.mu.Unlock()\n\t\tc.deliver(e)"}},
		tests: []tests{{module: "faults", pkg: ".", run: "^TestFaultEventsBlocked$"}},
	},
	{
		name: "giveback-before-reply",
		why:  "an acquire abandoned by its context is given back at once, on another connection, before the server answered it",
		edits: []edit{
			{"client.go", "\t\t\tif res, err := cmd.Slice(); err != nil || len(res) > 0 && res[0] == int64(1) || mode == waitQueue {\n\t\t\t\tc.giveBack(key, value, limit)\n\t\t\t}", "\t\t\t_ = cmd"},
			{"client.go", "\t\tif !left && mode != waitQueue { // a waiter's next attempt finds out, or it leaves\n\t\t\tc.giveBack(key, value, limit)\n\t\t}", "\t\tc.giveBack(key, value, limit)\n\t\t_ = left"},
		},
		tests: []tests{{module: "faults", pkg: ".", run: "^TestFaultShortDeadlines$"}},
	},
	{
		name: "arm-per-waiter-under-its-deadline",
		why:  "each waiter reads its key on the tracking connection itself, under its own deadline",
		edits: []edit{{"notifier.go", "\t\tn.arms[key] = append(n.arms[key], chs[i])\n\t}\n\tn.kickLocked()\n\tn.mu.Unlock()\n",
			"\t\tgo func() { _ = n.armAll(ctx, map[string][]chan armResult{key: {chs[i]}}) }()\n\t}\n\tn.mu.Unlock()\n"}},
		tests: []tests{root("^(TestArmOutlivesTheWaitersContext|TestCloseAfterAbandonedCalls|TestManyWaitersDoNotStarveRenewals)$")},
	},
	{
		name:  "cluster-node-renewals-skipped",
		why:   "on a Cluster, the reservations of one master are never renewed",
		edits: []edit{{"heartbeat.go", "\tfor _, part := range parts {", "\tfor _, part := range parts[1:] {"}},
		tests: []tests{root("^TestClusterBasics$")},
	},
	{
		name:  "cluster-renewals-in-one-pipeline",
		why:   "on a Cluster, all masters are renewed in one pipeline, which waits for the slowest",
		edits: []edit{{"heartbeat.go", "\tcc, ok := c.rdb.(*redis.ClusterClient)\n\tif !ok {\n\t\treturn []nodeBatch{{rdb: c.rdb, batch: batch}}", "\tcc, ok := c.rdb.(*redis.ClusterClient)\n\tif !ok || len(batch) > 0 {\n\t\treturn []nodeBatch{{rdb: c.rdb, batch: batch}}"}},
		tests: []tests{root("^TestClusterNodeDownCostsOnlyItsKeys$")},
	},
	{
		name:  "guard-marker-wrong-slot",
		why:   "on a Cluster, the restart-guard marker of a key is in another slot",
		edits: []edit{{"keys.go", "return \"{\" + slotTag(slot(hashPart(key))) + \"}:reservation-restart-guard\"", "return \"{\" + slotTag((slot(hashPart(key))+1)%16384) + \"}:reservation-restart-guard\""}},
		tests: []tests{root("^TestClusterBasics$")},
	},
	{
		name: "release-notice-not-sharded",
		why:  "on a Cluster, the release notice is a broadcast PUBLISH, which the masters' sharded subscriptions do not hear",
		edits: []edit{
			{"scripts.go", "\tif c.cluster {\n\t\targs = append(args, \"SPUBLISH\")", "\tif false {\n\t\targs = append(args, \"SPUBLISH\")"},
			{"scripts.go", "\tif c.cluster {\n\t\treturn \"SPUBLISH\"", "\tif false {\n\t\treturn \"SPUBLISH\""},
		},
		tests: []tests{root("^TestClusterWithoutTracking$")},
	},
	{
		name:  "replication-not-checked",
		why:   "an acquisition that no replica acknowledged is held all the same",
		edits: []edit{{"client.go", "if err := call.replicated(); err != nil {", "if err := call.replicated(); false && err != nil {"}},
		tests: []tests{root("^TestWaitReplicas$")},
	},
	{
		name:  "sentinel-switch-ignored",
		why:   "the notifier's connections stay on the old master after a Sentinel failover",
		edits: []edit{{"notifier.go", "\tn.servers.closeAll()\n\tn.askRearm()\n", ""}},
		tests: []tests{root("^TestSentinelFollowsFailover$")},
	},
	{
		name:  "status-errors-read-as-free",
		why:   "Status and List take any error of a key's read (MOVED, CLUSTERDOWN) for a missing key",
		edits: []edit{{"status.go", "return errors.Is(err, redis.Nil) || isWrongType(err)", "var rerr redis.Error\n\treturn errors.Is(err, redis.Nil) || errors.As(err, &rerr)"}},
		tests: []tests{root("^TestClusterBasics$")},
	},
	{
		name:  "quorum-majority-miscounted",
		why:   "in quorum mode, a majority of N servers is counted as N/2",
		edits: []edit{{"quorum.go", "c.quorum.majority = len(addrs)/2 + 1", "c.quorum.majority = len(addrs) / 2"}},
		tests: []tests{root("^TestQuorumNeedsAMajority$")},
	},
	{
		name: "quorum-token-not-written-back",
		why:  "in quorum mode, the fencing token is not written back to a majority before TryLock returns",
		edits: []edit{
			{"quorum.go", "for _, wave := range [][]*Client{first, second} {", "for _, wave := range [][]*Client{} {"},
			{"quorum.go", "if have < q.majority {\n\t\treturn &QuorumError{", "if false {\n\t\treturn &QuorumError{"},
		},
		tests: []tests{root("^TestQuorumTokenWrittenBack$")},
	},
	{
		name:  "quorum-deadline-earliest",
		why:   "in quorum mode, the holding's deadline is the earliest server's instead of the majority-th latest",
		edits: []edit{{"quorum.go", "return ds[majority-1]", "return ds[len(ds)-1]"}},
		tests: []tests{root("^TestQuorumDeadlineIsTheMajoritys$")},
	},
	{
		name:  "quorum-minority-loss-ends-holding",
		why:   "in quorum mode, a part lost on one server ends the whole holding",
		edits: []edit{{"quorum.go", "\tif alive < c.quorum.majority {\n\t\tc.lose(r,", "\tif alive < len(r.parts) {\n\t\tc.lose(r,"}},
		tests: []tests{root("^TestQuorumForeignChanges$")},
	},
	{
		name:  "quorum-parts-not-retaken",
		why:   "in quorum mode, a part lost on one server is never taken again, so the majority erodes",
		edits: []edit{{"quorum.go", "\t\t\t\tif p == nil {\n\t\t\t\t\tmissing[i] = append(missing[i], r)", "\t\t\t\tif false && p == nil {\n\t\t\t\t\tmissing[i] = append(missing[i], r)"}},
		tests: []tests{root("^(TestQuorumForeignChanges|TestQuorumServerRestartedWithoutData)$")},
	},
	{
		name:  "quorum-force-release-retaken",
		why:   "in quorum mode, a holder takes back each part that a force release deletes, and holds on for ever when the deletions reach the servers one at a time",
		edits: []edit{{"scripts/acquire.lua", "  if redis.call('GET', KEYS[6]) == ARGV[1] then", "  if false then"}},
		tests: []tests{root("^TestQuorumForceReleaseOneServerAtATime$")},
	},
	{
		name:  "quorum-give-back-without-turn",
		why:   "in quorum mode, the give-back of an earlier try on a server runs while a later try of the same holding takes its part there, and deletes it",
		edits: []edit{{"reservation.go", "\t\tif c.ctx.Err() == nil {\n\t\t\tdefer c.takeTurn(key, value)()", "\t\tif false {\n\t\t\tdefer c.takeTurn(key, value)()"}},
		tests: []tests{root("^TestQuorumGiveBackWaitsForALaterTry$")},
	},
	{
		name:  "quorum-majority-down-refused",
		why:   "in quorum mode, an acquisition refused by one server's no and another's failure is decided at once, so a majority down answers a refusal that names one server's holder, not a QuorumError",
		edits: []edit{{"quorum.go", "for len(yes) < q.majority && len(failed) < q.majority && (len(yes)+n-got >= q.majority || len(failed)+n-got >= q.majority) {", "for len(yes) < q.majority && len(no)+len(failed) <= n-q.majority {"}},
		tests: []tests{root("^TestQuorumMajorityDownIsAQuorumError$")},
	},
	{
		name:  "quorum-refusal-waits-for-all",
		why:   "in quorum mode, an acquisition that is refused whatever the servers still to answer say waits for them, up to the quorum timeout",
		edits: []edit{{"quorum.go", "(len(yes)+n-got >= q.majority || len(failed)+n-got >= q.majority) {", "got < n {"}},
		tests: []tests{root("^TestQuorumRefusalDoesNotWaitForTheSilent$")},
	},
	{
		name:  "event-batch-on-every-renewal",
		why:   "every renewal's EventExtended carries its round trip's batch size, so metrics count each round trip once per reservation",
		edits: []edit{{"heartbeat.go", "\t\tif i == 0 {\n\t\t\te.Batch = len(extended)", "\t\tif i >= 0 {\n\t\t\te.Batch = len(extended)"}},
		tests: []tests{root("^TestEventExtendedBatch$")},
	},
	{
		name:  "metrics-loss-cause-dropped",
		why:   "the Prometheus adapter counts every loss under one cause",
		edits: []edit{{"metrics/prometheus/prometheus.go", "m.lost.WithLabelValues(m.labels(e, string(e.Cause))...).Inc()", "m.lost.WithLabelValues(m.labels(e, string(reservation.LossForeign))...).Inc()"}},
		tests: []tests{{module: "metrics/prometheus", pkg: ".", run: "^(TestMetrics|TestMetricsWithoutResourceLabel)$"}},
	},
	{
		name:  "quorum-lock-jumps-queue",
		why:   "in quorum mode, Lock tries at once even when waiters of the same Client queue for the resource",
		edits: []edit{{"quorum_wait.go", "tried := !c.queued(w.key)", "tried := true"}},
		tests: []tests{root("^(TestQuorumWaitersQueueFairly|TestQuorumLockBehindWaitersSendsNothing)$")},
	},
	{
		name: "queue-lifo",
		why:  "the server's queue puts a new waiter first: last come, first served",
		edits: []edit{{"scripts/acquire.lua", "      score = math.max(now_us, tonumber(tail[2]) + 1)",
			"      score = tonumber(redis.call('ZRANGE', KEYS[4], '0', '0', 'WITHSCORES')[2]) - 1"}},
		tests: []tests{root("^TestQueueServesInArrivalOrder$")},
	},
	{
		name: "queue-dead-waiter-kept",
		why:  "a waiter whose lease ran out is never taken off the server's queue, which then stalls",
		edits: []edit{
			{"scripts/acquire.lua", "local dead = redis.call('ZRANGE', KEYS[5], '-inf', now_ms, 'BYSCORE', 'LIMIT', '0', '64')", "local dead = {}"},
			{"scripts/release.lua", "local dead = call('ZRANGE', KEYS[3], '-inf', t[1] * 1000 + math.floor(t[2] / 1000), 'BYSCORE', 'LIMIT', '0', '64')", "local dead = {}"},
		},
		tests: []tests{root("^TestQueueTryLockAndDeadWaiter$")},
	},
	{
		name: "queue-without-expiry",
		why:  "a new queue and its leases get no expiry, so that a queue whose waiters all died stays for ever",
		edits: []edit{{"scripts/acquire.lua", "    if redis.call('PEXPIRE', KEYS[i], ttl, first) == 0 then\n      redis.call('PEXPIRE', KEYS[i], ttl, second)\n    end\n",
			"    redis.call('PEXPIRE', KEYS[i], ttl, 'GT')\n"}},
		tests: []tests{root("^TestAcquireScriptQueueExpiry$")},
	},
	{
		name:  "queue-release-wakes-nobody",
		why:   "the release script tells no waiter of the server's queue its turn",
		edits: []edit{{"scripts/release.lua", "    redis.pcall(ARGV[3], ARGV[4], now)\n", ""}},
		tests: []tests{root("^TestQueueWaiterLeaves$")},
	},
	{
		name:  "queue-next-never-told",
		why:   "when the head of the server's queue acquires, the next waiter is not told its turn",
		edits: []edit{{"scripts/acquire.lua", "    redis.pcall(ARGV[7], ARGV[6], now)\n", ""}},
		tests: []tests{root("^TestQueueNextWaiterWatchesTheKey$")},
	},
	{
		name:  "queue-next-not-the-second",
		why:   "when the head of the server's queue acquires, the script takes nobody for the next head, where the second place is, and tells no one",
		edits: []edit{{"scripts/acquire.lua", "      head = second\n", "      head = nil\n"}},
		tests: []tests{root("^TestQueueNextWaiterWatchesTheKey$")},
	},
	{
		name:  "queue-next-read-before-pruning",
		why:   "when the head of the server's queue acquires after pruning dead waiters, the script tells the second place it read before the pruning, which may be a dead waiter, and no live one",
		edits: []edit{{"scripts/acquire.lua", "    if head_before == ARGV[1] and not pruned then\n", "    if head_before == ARGV[1] then\n"}},
		tests: []tests{root("^TestAcquireScriptTellsTheNextLiveWaiter$")},
	},
	{
		name:  "queue-live-head-loses-place",
		why:   "a waiter at the head of the server's queue whose lease was lost (evicted) is sent to the back by its own attempt, though the attempt shows it alive",
		edits: []edit{{"scripts/acquire.lua", "if not head or head == ARGV[1] or redis.call('ZRANK', KEYS[5], head) then", "if not head or redis.call('ZRANK', KEYS[5], head) then"}},
		tests: []tests{root("^TestAcquireScriptTellsTheNextLiveWaiter$")},
	},
	{
		name:  "queue-place-taken-blind",
		why:   "a waiter takes its place as the first of a new queue even when others queue: it jumps ahead of them, and each renewal of its place sends it to the back",
		edits: []edit{{"scripts/acquire.lua", "fresh = mode ~= '' and not queued\n", "fresh = mode ~= ''\n"}},
		tests: []tests{root("^TestQueueServesInArrivalOrder$")},
	},
	{
		name: "semaphore-permits-past-limit",
		why:  "a semaphore of N permits is acquired as one of N+1: permits are counted past N",
		edits: []edit{
			{"client.go", "keys = append(keys, permitKeys(key, limit)...)\n\t\targs = append(args, limit)", "keys = append(keys, permitKeys(key, limit+1)...)\n\t\targs = append(args, limit+1)"},
			{"client.go", "if res.permit < 1 || res.permit > limit {", "if res.permit < 1 || res.permit > limit+1 {"},
		},
		tests: []tests{{module: "faults", pkg: ".", run: "^TestFaultSemaphoreRestart$"}},
	},
	{
		name:  "semaphore-permit-without-expiry",
		why:   "the acquire script sets a permit's key without a TTL: a holder killed before its first renewal never frees its permit",
		edits: []edit{{"scripts/acquire.lua", "redis.call('SET', KEYS[5 + free], ARGV[1], 'PX', ARGV[2])", "redis.call('SET', KEYS[5 + free], ARGV[1])"}},
		tests: []tests{{module: "faults", pkg: ".", run: "^TestFaultSemaphoreKillHolder$"}},
	},
	{
		name:  "semaphore-dead-permit-renewed",
		why:   "each acquisition of a permit extends every permit of the semaphore, its dead holders' too, which are then never freed",
		edits: []edit{{"scripts/acquire.lua", "local function mark()\n  if current then", "local function mark()\n  for i = 1, limit do\n    redis.pcall('PEXPIRE', KEYS[5 + i], ARGV[2])\n  end\n  if current then"}},
		tests: []tests{{module: "faults", pkg: ".", run: "^TestFaultSemaphoreKillHolder$"}},
	},
	{
		name: "set-acquired-partly",
		why:  "the set's script takes each free member as it goes: a set refused by a held member keeps the members before it, which nobody releases",
		edits: []edit{{"scripts/acquire_set.lua", "  local v = redis.pcall('GET', key(i))\n  if v and v ~= value then\n",
			"  local v = redis.pcall('GET', key(i))\n  if not v then\n    redis.call('SET', key(i), value, 'PX', ttl)\n  end\n  if v and v ~= value then\n"}},
		tests: []tests{root("^TestSetAllOrNothing$")},
	},
	{
		name:  "set-place-in-one-queue",
		why:   "a set's waiter takes a place in its first member's queue only: two sets that overlap in different orders each head a queue the other needs, and wait for ever",
		edits: []edit{{"scripts/acquire_set.lua", "  local furthest = 0\n  for i = 1, n do", "  local furthest = 0\n  for i = 1, 1 do"}},
		tests: []tests{root("^TestSetNoDeadlock$")},
	},
	{
		name:  "set-waiter-woken-by-every-member",
		why:   "a set's waiter refused by one member wakes and tries again at every change of the others, which it could not take anyway (a lever of the second round of performance)",
		edits: []edit{{"set.go", "\t\t\tcase refusing >= 0 && i != refusing:", "\t\t\tcase false && refusing >= 0:"}},
		tests: []tests{root("^TestSetWaiterWatchesTheMemberThatRefused$")},
	},
	{
		name:  "set-release-through-the-pool",
		why:   "a set's release goes through the connection pool, not the tracking connection: its DELs come back there as invalidations and the holder reads every member again (a lever of the second round of performance)",
		edits: []edit{{"set.go", "\tleft, err := c.batch.runAll(ctx, calls, func() {", "\tleft, err := false, error(nil)\n\t_, err = evalPipelined(ctx, c.rdb, calls)\n\tfunc(tell func()) { tell() }(func() {"}},
		tests: []tests{root("^TestSetReleaseOnTheTrackingConnection$")},
	},
	{
		name:  "set-release-tells-no-local-waiter",
		why:   "a set's release on the tracking connection does not tell the Client's own waiters of its members, whose DELs there come back as no notice: they wait for their retry",
		edits: []edit{{"set.go", "\t\tfor _, m := range g.members {\n\t\t\tc.releasedHere(m)\n\t\t}\n\t})", "\t\tfor range g.members {\n\t\t}\n\t})"}},
		tests: []tests{root("^TestSetReleaseWakesTheClientsOwnWaiters$")},
	},
	{
		name:  "queue-head-waits-for-the-watch",
		why:   "the head of a queue waits for the notifier to watch the key however long that takes (a second after a reconnection), and its place's lease runs out meanwhile",
		edits: []edit{{"wait.go", "actx, cancel := context.WithDeadline(ctx, leaseDue)", "actx, cancel := context.WithCancel(ctx)"}},
		tests: []tests{{module: "faults", pkg: ".", run: "^TestQueueHeadKeepsItsPlaceAfterReconnect$/^lock$/^at-once$"}},
	},
	{
		name:  "cluster-script-sent-alone",
		why:   "on a Cluster a script call is sent on its own rather than in a pipeline, and go-redis first reads the command table of a random node, for 5 s whatever the deadline when that node hangs",
		edits: []edit{{"scripts.go", "if _, cluster := rdb.(*redis.ClusterClient); cluster || sc.then != nil", "if sc.then != nil"}},
		tests: []tests{root("^TestClusterHungReplicaDelaysNothing$")},
	},
	{
		name:  "cluster-scripts-loaded-on-every-node",
		why:   "on a Cluster a script missing from a node is loaded on every node, replicas included, and the call waits for any that hangs",
		edits: []edit{{"scripts.go", "\t\treturn errNoLoadOnCluster\n", "\t\treturn c.ForEachShard(ctx, load)\n"}},
		tests: []tests{root("^TestClusterHungReplicaDelaysNothing$")},
	},
	{
		name:  "set-head-waits-for-the-watch",
		why:   "a set waiter at the head waits for the notifier to watch the members however long that takes, and its places' leases run out meanwhile",
		edits: []edit{{"set.go", "actx, cancel := context.WithTimeout(ctx, delay)", "actx, cancel := context.WithCancel(ctx)"}},
		tests: []tests{{module: "faults", pkg: ".", run: "^TestQueueHeadKeepsItsPlaceAfterReconnect$/^set$"}},
	},
	{
		name:  "set-waiter-behind-retries-at-once",
		why:   "a set waiter behind another in some queue tries again at once instead of waiting for its turn",
		edits: []edit{{"set.go", "\t\thead := last == nil || last.place == 0\n", "\t\thead := last == nil || last.place == 0\n\t\tif !head {\n\t\t\tcontinue\n\t\t}\n"}},
		tests: []tests{root("^TestSetWaiterBehindWaits$")},
	},
	{
		name:  "semaphore-waiter-tracks-permits",
		why:   "a semaphore's waiters watch its permits' keys with client tracking, so every holder's renewal wakes them",
		edits: []edit{{"wait.go", "func (w *wait) tracked(n *notifier) bool { return n.tracking && w.limit == 0 }", "func (w *wait) tracked(n *notifier) bool { return n.tracking }"}},
		tests: []tests{root("^TestSemaphoreWaitersNotWokenByRenewals$")},
	},
	{
		name:  "set-member-loss-ignored",
		why:   "the loss of one member does not end the set: its holder goes on as if it held every member",
		edits: []edit{{"set.go", "if !g.end(cause) || !errors.Is(cause, ErrLost) {", "if errors.Is(cause, ErrLost) || !g.end(cause) {"}},
		tests: []tests{root("^TestSetLossOfAMember$")},
	},
	{
		name:  "history-set-partial-accepted",
		why:   "the history checker accepts a set acquired without one of its members",
		edits: []edit{{"faults/history/history.go", "if !slices.ContainsFunc(members, func(hd *Holding) bool { return hd.Resource == r }) {", "if false {"}},
		tests: []tests{{module: "faults", pkg: "./history", run: "^TestCheckSets$"}},
	},
	{
		name:  "history-set-loss-unchecked",
		why:   "the history checker accepts a member held on after another member's loss ended the set",
		edits: []edit{{"faults/history/history.go", "if hd.End == 0 || hd.End > lossAt {", "if false {"}},
		tests: []tests{{module: "faults", pkg: "./history", run: "^TestCheckSets$"}},
	},
	{
		name:  "acquisition-read-trusted-after-rearm",
		why:   "a holding whose acquisition read watched its key is trusted even when tracking was turned on again since, which may have dropped the watch",
		edits: []edit{{"notifier.go", "return w != nil && w.n == n && w.gen == n.gen && w.notices == n.notices && !n.rearm && !n.rearming", "return w != nil && w.n == n && w.notices == n.notices"}},
		tests: []tests{root("^TestAcquisitionReadWatchesTheKey$")},
	},
	{
		name:  "acquisition-read-trusted-after-notice",
		why:   "a holding whose acquisition read watched its key is trusted even when a notice came since, which may have ended the watch unheard",
		edits: []edit{{"notifier.go", "return w != nil && w.n == n && w.gen == n.gen && w.notices == n.notices && !n.rearm && !n.rearming", "return w != nil && w.n == n && w.gen == n.gen && !n.rearm && !n.rearming"}},
		tests: []tests{root("^TestAcquisitionReadWatchesTheKey$")},
	},
	{
		name:  "watch-read-by-mget",
		why:   "the reads that watch held keys include an MGET, which the worker's documented ACL rule refuses",
		edits: []edit{{"notifier.go", "\t\tcaching[i] = p.Do(ctx, \"CLIENT\", \"CACHING\", \"YES\")\n\t\tgets[i] = p.Get(ctx, key)\n", "\t\tcaching[i] = p.Do(ctx, \"CLIENT\", \"CACHING\", \"YES\")\n\t\tp.MGet(ctx, key)\n\t\tgets[i] = p.Get(ctx, key)\n"}},
		tests: []tests{root("^TestWorkerACLRule$")},
	},
	{
		name:  "released-here-stays-armed",
		why:   "a key released on the tracking connection stays marked as watched for its waiters, though NOLOOP dropped it there",
		edits: []edit{{"notifier.go", "\t\tkw.armed = false\n\t\tkw.signal()\n\t}\n}\n\n// notify", "\t\tkw.signal()\n\t}\n}\n\n// notify"}},
		tests: []tests{root("^TestReleaseHereUnarmsTheKey$")},
	},
	{
		name:  "handover-token-not-grown",
		why:   "a release that hands the key over to its Client's waiter gives it the last token again",
		edits: []edit{{"scripts/release.lua", "  token = math.max(last + 1, now_us)", "  token = last"}},
		tests: []tests{root("^TestReleaseHandsOverToOwnWaiter$")},
	},
	{
		name:  "handover-during-restart-guard",
		why:   "a release hands the key over while the restart guard runs",
		edits: []edit{{"scripts/release.lua", "    assert(set_ms and set_ms + guard <= math.floor(now_us / 1000))\n", ""}},
		tests: []tests{root("^TestHandOverWaitsForRestartGuard$")},
	},
	{
		name:  "handover-to-strangers",
		why:   "a release hands the key over to another Client's waiter whose lease does not say it takes grants (a client of a version before grants never hears of it)",
		edits: []edit{{"scripts/release.lua", "    assert(lease and lease % 1 == 0.5)\n", ""}},
		tests: []tests{root("^TestReleaseDoesNotHandOverToOthers$")},
	},
	{
		name:  "handover-short-lease",
		why:   "a release hands the key over to another Client's waiter whose lease is about to end, a holding too short to be of use",
		edits: []edit{{"scripts/release.lua", "    assert(ends - math.floor(now_us / 1000) >= tonumber(ARGV[5]) / 2)\n", ""}},
		tests: []tests{root("^TestReleaseDoesNotHandOverToOthers$")},
	},
	{
		name:  "grant-for-a-ttl",
		why:   "a release hands another Client's waiter the key for the releaser's TTL, which outlives the waiter's lease and the deadline it counts",
		edits: []edit{{"scripts/release.lua", "    redis.call('SET', KEYS[1], head, 'PXAT', string.format('%.0f', ends))\n", "    redis.call('SET', KEYS[1], head, 'PX', ARGV[5])\n"}},
		tests: []tests{root("^TestReleaseHandsOverToAnotherClientsWaiter$")},
	},
	{
		name:  "grant-deadline-from-receipt",
		why:   "a waiter handed the key by another Client counts its deadline from when it heard of it, after the key's expiry was set",
		edits: []edit{{"wait.go", "\t\tg.sent = w.refused\n", "\t\tg.sent = time.Now()\n"}},
		tests: []tests{root("^TestReleaseHandsOverToAnotherClientsWaiter$")},
	},
	{
		name:  "grant-lease-unchecked",
		why:   "a waiter takes another Client's grant of any lease, one that came after a later attempt found the key someone else's too",
		edits: []edit{{"wait.go", "\t\tif g.lease == 0 || g.lease != w.refusedLease {\n", "\t\tif false {\n"}},
		tests: []tests{root("^TestGrantOfAnotherLeaseIgnored$")},
	},
	{
		name:  "grant-not-taken",
		why:   "waiters never say that they take grants: another Client's release frees the key, and the waiter pays an attempt",
		edits: []edit{{"client.go", "\t\targs[4] = grantMode\n", ""}},
		tests: []tests{root("^TestReleaseHandsOverToAnotherClientsWaiter$")},
	},
	{
		name:  "grant-told-early-lost",
		why:   "a grant told before its waiter joined is taken for a turn: the waiter's next attempt pays a round trip",
		edits: []edit{{"notifier.go", "\t\tif e.grant.token != 0 && w.grant != nil {", "\t\tif false {"}},
		tests: []tests{root("^TestGrantToldBeforeJoin$")},
	},
	{
		name:  "handover-next-not-told",
		why:   "after a handover the waiter handed the key is told its turn again, not the next place",
		edits: []edit{{"scripts/release.lua", "    now = second\n", ""}},
		tests: []tests{root("^TestReleaseHandsOverToOwnWaiter$")},
	},
	{
		name:  "handover-waiter-tries-anyway",
		why:   "a waiter offered the key by a release under way tries meanwhile, a round trip that the handover then waits for",
		edits: []edit{{"wait.go", "if offer := n.offerOf(w.key); offer != nil {", "if offer := n.offerOf(w.key); false {"}},
		tests: []tests{root("^TestHandOverWaiterWaitsForTheRelease$")},
	},
	{
		name:  "handover-grant-dropped",
		why:   "a waiter handed the key by a release does not take it, and holds it only at its next attempt",
		edits: []edit{{"wait.go", "\tcase g := <-q.grant:\n\t\treturn w.granted(ctx, g)\n", "\tcase <-q.grant:\n\t\treturn nil, nil\n"}},
		tests: []tests{root("^TestReleaseHandsOverToOwnWaiter$")},
	},
	{
		name:  "handover-offer-outlasts-the-wait",
		why:   "a waiter offered the key waits for the release under way even when its context ended, and takes the key it gave up",
		edits: []edit{{"wait.go", "\t\tcase <-ctx.Done():\n\t\t\treturn nil, w.notAcquired(ctx)\n\t\tcase <-w.c.ctx.Done():", "\t\tcase <-w.c.ctx.Done():"}},
		tests: []tests{root("^TestHandOverToAWaiterThatGaveUp$")},
	},
	{
		name:  "batch-queue-sent-one-by-one",
		why:   "calls queued behind the round trips under way are sent one pipeline each, not together",
		edits: []edit{{"batch.go", "\tcalls := b.queue\n\tb.queue = nil\n\tb.senders++", "\tcalls := b.queue[:1]\n\tb.queue = b.queue[1:]\n\tb.senders++"}, {"batch.go", "\t\tcalls = b.queue\n\t\tb.queue = nil\n\t\tb.mu.Unlock()", "\t\tcalls = b.queue[:1]\n\t\tb.queue = b.queue[1:]\n\t\tb.mu.Unlock()"}},
		tests: []tests{root("^TestBatcherQueuesBeyondMaxBatches$")},
	},
	{
		name:  "batch-given-up-call-sent",
		why:   "a queued call whose context ended is still sent, and its caller waits for it",
		edits: []edit{{"batch.go", "\t\tif c == call {\n\t\t\tb.queue = append(b.queue[:i], b.queue[i+1:]...)", "\t\tif c == call && false {\n\t\t\tb.queue = append(b.queue[:i], b.queue[i+1:]...)"}},
		tests: []tests{root("^TestBatcherQueuesBeyondMaxBatches$")},
	},
	{
		name:  "workers-never-reused",
		why:   "every detached call starts a goroutine of its own, though a worker waits idle",
		edits: []edit{{"workers.go", "\tcase w.work <- f:\n\t\treturn\n", ""}},
		tests: []tests{root("^TestWorkersReuseAnIdleWorker$")},
	},
	{
		name:  "workers-outlive-stop",
		why:   "stop leaves the idle workers to end on their own, so that Close waits out their idle time",
		edits: []edit{{"workers.go", "\t\tcase <-w.quit:\n\t\t\tw.idle.Add(-1)\n\t\t\treturn\n", ""}},
		tests: []tests{root("^TestWorkersReuseAnIdleWorker$")},
	},
}
