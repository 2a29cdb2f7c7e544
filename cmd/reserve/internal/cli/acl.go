package cli

import (
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/redis-reservation/reservation"
)

func newACLCmd(a *app) *cobra.Command {
	var (
		readOnly, cluster, quorum bool
		prefix                    string
	)
	cmd := &cobra.Command{
		Use:   "acl [flags]",
		Short: "Print the Redis ACL rule that reserve and the library need, and nothing more",
		Long: `Print the rule of a Redis user (ACL SETUSER) that allows what reserve and
the Go library do, and nothing more: the keys under --prefix and their
companions, the restart-guard marker, the commands the scripts run, and the
notice channels. The rule is written from the library's own list of keys,
commands and channels, so it follows the version of reserve that prints it.

The default rule is a worker's: reserve run, wait, release --force, prime,
status, list and top. --read-only prints the rule of a user that only looks
(reserve status, list and top): read-only keys, no scripts.

The rule starts with resetkeys, resetchannels and -@all: it replaces what
the user had. The user's name, "on" and password are yours to add. It does
not talk to Redis.

Exit status: 0; 64 for bad usage.`,
		Example: `  # An aclfile line for a worker user:
  echo "user worker on >secret $(reserve acl)" >> /etc/redis/users.acl

  # Or at once on a running server (set -f: the rule's * are not file names):
  set -f; redis-cli ACL SETUSER worker on '>secret' $(reserve acl); set +f

  # A user for dashboards and operators who only look:
  set -f; redis-cli ACL SETUSER viewer on '>secret' $(reserve acl --read-only); set +f

  # Every node of a Redis Cluster, with another prefix:
  reserve acl --cluster --prefix jobs:`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cluster && quorum {
				return usageErrorf("--cluster and --quorum: give one")
			}
			if prefix == "" {
				return usageErrorf("--prefix is empty")
			}
			d := reservation.OneServer
			switch {
			case cluster:
				d = reservation.ClusterNodes
			case quorum:
				d = reservation.QuorumServers
			}
			_, err := fmt.Fprintln(a.stdout, aclRule(prefix, d, readOnly))
			return outputError(err)
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&readOnly, "read-only", false, "the rule of a user that only looks: reserve status, list and top")
	fs.BoolVar(&cluster, "cluster", false, "the rule for every node of a Redis Cluster (sharded notices, slot map)")
	fs.BoolVar(&quorum, "quorum", false, "the rule for every server of a quorum (--quorum)")
	fs.StringVar(&prefix, "prefix", reservation.DefaultPrefix, "`prefix` of the Redis keys, as given to the other commands")
	return cmd
}

// aclRule returns the library's rule (reservation.ACLRules) for prefix on
// d, the worker's or the read-only one, with what reserve top adds to it:
// PSUBSCRIBE to the release channels (releasePatterns), which a Redis
// Cluster does not offer (its notices are sharded).
func aclRule(prefix string, d reservation.Deployment, readOnly bool) reservation.ACLRule {
	rules := reservation.ACLRules(prefix, d)
	rule := slices.Clone(rules.Worker)
	if readOnly {
		rule = slices.Clone(rules.ReadOnly)
	}
	if d == reservation.ClusterNodes {
		return rule
	}
	if readOnly {
		// The worker's rule has the channels already.
		for _, p := range releasePatterns(prefix) {
			rule = append(rule, "&"+p)
		}
	}
	return append(rule, "+psubscribe")
}
