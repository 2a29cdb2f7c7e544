// Package reservation holds reservations in Redis: locks on named resources
// that expire unless their holder keeps renewing them. A worker that dies
// stops renewing, its reservation expires, and another worker takes the job
// over.
//
// It is the Go counterpart of the Node library node-redis-reservation, with
// the same Redis keys ("reservation-<resource>") so that Node and Go workers
// exclude each other, and the same operations:
//
//	Node                               Go
//	new ReserveResource(by, host, ...) New(addr, &Options{By, HeartbeatInterval, TTL, Logger, Password})
//	lock(resource, cb)                 Client.TryLock(ctx, resource) (*Reservation, error)
//	wait_until_lock(resource, cb)      Client.Lock(ctx, resource) (*Reservation, error)
//	release(cb)                        Reservation.Release(ctx) error
//
// As in sync.Mutex, Lock blocks and TryLock tries once. A resource held by
// someone else is an error for TryLock: a *NotAcquiredError matching
// ErrNotAcquired, which says who holds it and for how long.
//
// # A five-minute tour
//
// A Client is made once per process, from an address, from Sentinel or
// Cluster options (NewFailover, NewCluster, or their go-redis URL forms in
// New), or from an existing go-redis client (NewWithClient):
//
//	c, err := reservation.New("redis://localhost:6379", &reservation.Options{By: "worker-1"})
//	defer c.Close()
//
// TryLock returns at once; Lock blocks until the resource is free or its
// context ends:
//
//	r, err := c.TryLock(ctx, "nightly-report")
//	if errors.Is(err, reservation.ErrNotAcquired) { ... } // held by someone else
//	r, err := c.Lock(ctx, "nightly-report")
//
// Each acquisition and each Release is one script, one round trip. When
// many goroutines lock and release through one Client at once, their
// scripts share round trips: those that come while two are under way go
// together in the next pipeline.
//
// While held, a reservation is renewed every HeartbeatInterval by the
// Client's one heartbeat loop (all held reservations together, in pipelined
// multi-key scripts). It ends by Release, by Close, or by its loss: the key
// was found gone or someone else's, or no renewal succeeded before the
// holder's local deadline (the last successful renewal's send time plus the
// TTL, less a drift margin of 1% of the TTL and DriftMargin, 150 ms by default). A holder cut off from
// Redis thus learns of its loss before the key can expire on the server and
// anyone else can take it. A holder also watches its key through client
// tracking: a delete, overwrite, flush or eviction by anyone else ends the
// holding within milliseconds, not at the next renewal. The loss closes
// Done, sets Err to an error matching ErrLost (with the reason) and cancels
// Context with that cause:
//
//	select {
//	case <-r.Done():      // lost: stop touching the resource
//	case res := <-work:   // finished
//	}
//
// Every acquisition gets a fencing token (Token) greater than every token
// issued before for the resource, even after the server lost its data: pass
// it to the storage you protect, so that it can refuse a holder that has
// since lost its reservation.
//
// Release deletes the key only if it still holds this holding's value
// ("<By>-<96 random bits>"), and returns ErrNotHeld when the reservation was
// lost or already released: it can never delete someone else's.
//
// # Events
//
// Options.OnEvent receives an Event for what a user or a metrics system may
// want to know: acquisitions, releases, renewals, losses and their cause,
// the restart guard holding acquisitions back, Redis errors. The same
// events are logged through Options.Logger, with the event's kind as the
// message.
//
// # Waiting
//
// A waiter never polls at a fixed interval. It is woken by server-assisted
// client tracking (any change of the key: a release, a Node worker's DEL, an
// expiry), by the release notice published by the release script (for
// clients without tracking), by the holder's remaining TTL running out, and
// at worst by the RetryInterval fallback (1 s).
//
// Waiters are served first come, first served, across processes and hosts:
// each Lock call takes a place in a queue kept on the server beside the key,
// leased for a TTL and renewed while it waits, so a waiter that dies leaves
// it within its TTL. Only the head of the queue watches the key; a release
// tells it its turn and wakes nobody else. TryLock does not go ahead of the
// queue. Node workers, clients of versions before the queue and Clients with
// Options.NoQueue do not queue: they take the key whenever it is free.
//
// # Semaphores and sets
//
// Limit(n) makes a call take one of n permits of a resource, which up to n
// holders hold at once; each permit is a reservation of its own (renewed,
// lost, fenced and expiring like one), so no permit outlives its holder by
// more than the TTL. With(others...) makes a call reserve several resources
// at once, all or none, in one round trip; the Reservation stands for the
// set, which is lost when any member is, and overlapping sets never
// deadlock. See Limit and With.
//
// # The restart guard
//
// When Redis loses its data (a restart without persistence, a FLUSHALL, a
// failover to an empty replica), old holders believe for up to a TTL that
// they hold keys that no longer exist. The acquire script notices the loss
// through a marker key and refuses every acquisition for RestartGuard (the
// TTL by default); by then every old holder has seen its loss. A brand-new
// server looks the same, so the first acquisitions on it wait for the guard
// too, unless PrimeRestartGuard is called by whoever knows the server is new.
//
// # Sentinel and Cluster
//
// Replication in Redis is asynchronous: a failover may promote a replica
// that never received a reservation. Its holder reports the loss at its
// next renewal at the latest, but someone else may acquire the resource
// before then. Options.WaitReplicas narrows that window: each acquisition
// and renewal counts only once that many replicas acknowledged it (WAIT), so
// the replica that is promoted has it, as long as it is one of those that
// acknowledged. A Client made by NewFailover follows Sentinel's failovers
// with all its connections; on a Cluster, each master is renewed and watched
// on its own, so one that fails costs only the reservations it holds.
//
// # A quorum of independent servers
//
// NewQuorum holds each reservation on a majority of N independent servers
// (the Redlock algorithm), so that the loss of a minority, even one that
// restarts without its data, neither loses a holding nor lets two holders
// overlap. It keeps what a single server gives: a local deadline (the
// majority-th latest of the servers' deadlines), a restart guard on each
// server, and fencing tokens that only grow, written back to a majority
// before TryLock returns (one round trip more than one server). Parts lost
// on a minority are taken again; Done closes when fewer than a majority
// hold. See NewQuorum.
package reservation
