package history

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// lockInput is an operation on the lock model of one resource.
type lockInput struct {
	acquire bool // else the holding ends
	holder  string
	token   int64
	limit   int // the permits of the resource (1: a plain reservation)
}

// lockState is the model's state for one resource: who holds it, as a
// sorted list of holder values each ended by a newline ("" when free), so
// that equal states compare equal; how many hold it, and of which limit;
// and the last token issued.
type lockState struct {
	holders string
	count   int
	limit   int
	token   int64
}

// list returns the holders of s, each with its newline.
func (s lockState) list() []string {
	list := strings.SplitAfter(s.holders, "\n")
	return list[:len(list)-1] // what follows the last newline
}

// with returns the holders of s and holder.
func (s lockState) with(holder string) string {
	list := s.list()
	i, _ := slices.BinarySearch(list, holder+"\n")
	return strings.Join(slices.Insert(list, i, holder+"\n"), "")
}

// without returns the holders of s but holder, and whether holder was
// among them.
func (s lockState) without(holder string) (string, bool) {
	list := s.list()
	i := slices.Index(list, holder+"\n")
	if i < 0 {
		return s.holders, false
	}
	return strings.Join(slices.Delete(list, i, i+1), ""), true
}

// LockModel is the sequential specification that a history of one
// resource must be linearizable against: a lock of N permits (1 for a
// plain reservation) that can be acquired only while fewer than N holders
// of the same limit hold it, that only a holder can end, and whose every
// acquisition carries a token greater than the last (the permits of a
// semaphore share one sequence).
var LockModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byRes := map[string][]porcupine.Operation{}
		var order []string
		for _, op := range history {
			r := op.Metadata.(string)
			if _, ok := byRes[r]; !ok {
				order = append(order, r)
			}
			byRes[r] = append(byRes[r], op)
		}
		out := make([][]porcupine.Operation, 0, len(order))
		for _, r := range order {
			out = append(out, byRes[r])
		}
		return out
	},
	Init: func() any { return lockState{} },
	Step: func(state, input, _ any) (bool, any) {
		s, in := state.(lockState), input.(lockInput)
		if in.acquire {
			if s.count > 0 && s.limit != in.limit || s.count >= in.limit || in.token <= s.token {
				return false, s
			}
			return true, lockState{holders: s.with(in.holder), count: s.count + 1, limit: in.limit, token: in.token}
		}
		rest, ok := s.without(in.holder)
		if !ok {
			return false, s
		}
		if s.count == 1 {
			return true, lockState{token: s.token}
		}
		return true, lockState{holders: rest, count: s.count - 1, limit: s.limit, token: s.token}
	},
	DescribeOperation: func(input, _ any) string {
		in := input.(lockInput)
		if in.acquire {
			if in.limit > 1 {
				return fmt.Sprintf("acquire %s token %d (1 of %d)", in.holder, in.token, in.limit)
			}
			return fmt.Sprintf("acquire %s token %d", in.holder, in.token)
		}
		return "end " + in.holder
	},
	DescribeState: func(state any) string {
		s := state.(lockState)
		if s.count == 0 {
			return fmt.Sprintf("free (last token %d)", s.token)
		}
		holders := strings.ReplaceAll(strings.TrimSuffix(s.holders, "\n"), "\n", ", ")
		if s.limit > 1 {
			return fmt.Sprintf("held by %s (%d of %d; last token %d)", holders, s.count, s.limit, s.token)
		}
		return fmt.Sprintf("held by %s (token %d)", holders, s.token)
	},
}

// Operations turns the holdings of r into porcupine operations of
// LockModel, partitioned by resource (the Metadata). The members of a set
// are each a lock of their own, in their resource's partition: the model
// checks each member's holdings as those of one resource, not that the
// set's members were taken at once (checkSets does). A model of the sets
// themselves would tie the resources of overlapping sets into one
// partition, whose search is exponential in the operations open at once
// across all of them, where the partitions keep it to one resource's. An acquisition spans
// from its call to its reply. The end of a holding spans from the instant
// another worker may take over without a violation (the earliest fault
// that excuses it, when its holder reported its loss in the time that
// fault explains) to the end its holder reported, and is a single instant
// when nothing excuses it.
func (r *Result) Operations() []porcupine.Operation {
	clients := map[string]int{}
	client := func(w string) int {
		id, ok := clients[w]
		if !ok {
			id = len(clients)
			clients[w] = id
		}
		return id
	}
	var ops []porcupine.Operation
	for _, hd := range r.Holds {
		id := client(hd.Worker)
		ops = append(ops, porcupine.Operation{
			ClientId: id, Metadata: hd.Resource,
			Input: lockInput{acquire: true, holder: hd.Holder, token: hd.Token, limit: max(hd.Limit, 1)},
			Call:  hd.Call, Return: hd.Acquired,
		})
		if hd.End == 0 {
			continue
		}
		from := hd.End
		for _, x := range hd.Excuses {
			if x.From < from && hd.End <= x.Until {
				from = x.From
			}
		}
		ops = append(ops, porcupine.Operation{
			ClientId: id, Metadata: hd.Resource,
			Input: lockInput{holder: hd.Holder},
			Call:  from, Return: hd.End,
		})
	}
	return ops
}

// Linearizable checks the holdings against LockModel with porcupine, for
// at most timeout. It answers "ok", "illegal" or "unknown" (porcupine ran
// out of time: nothing is known, and Passed says no). When the history is
// not linearizable and dir is not empty, it writes porcupine's
// visualization to dir/name.html and names the file in the answer.
func (r *Result) Linearizable(timeout time.Duration, dir, name string) string {
	res, info := porcupine.CheckOperationsVerbose(LockModel, r.Operations(), timeout)
	switch res {
	case porcupine.Ok:
		return "ok"
	case porcupine.Unknown:
		return fmt.Sprintf("unknown (porcupine did not finish within %v)", timeout)
	}
	if dir == "" {
		return "illegal"
	}
	path := filepath.Join(dir, name+".html")
	if err := os.MkdirAll(dir, 0o755); err == nil {
		if err := porcupine.VisualizePath(LockModel, info, path); err == nil {
			return "illegal (see " + path + ")"
		}
	}
	return "illegal"
}

// Passed reports whether an answer of Linearizable is a pass: only "ok"
// is. An unknown answer proves nothing and fails like an illegal one.
func Passed(verdict string) bool { return verdict == "ok" }
