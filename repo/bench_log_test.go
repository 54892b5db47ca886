package repo

import (
	"context"
	"fmt"
	"testing"

	"github.com/mtuf/mtuf/keys"
)

// mtufLogRepo is mtufRepo with a transparency log declared in root (no
// witnesses: their round trips are the network's, not the log's).
func mtufLogRepo(b *testing.B, n int) *Workspace {
	return mtufRepoWith(b, fmt.Sprintf("mtuf-log-%d", n), n, func(cfg *InitConfig, m keys.Memory) {
		cfg.Log = &LogSettings{Origin: "example.com/bench", Key: newTestKey(b, m, "log-test", keys.ED25519)}
	})
}

// BenchmarkPublishOneLog is the cost of the log on a publish at 100,000
// targets: the same publish on the same layout, with and without a log.
func BenchmarkPublishOneLog(b *testing.B) {
	const n = 100000
	for _, log := range []bool{false, true} {
		b.Run(fmt.Sprintf("log=%t/targets=%d", log, n), func(b *testing.B) {
			ws := mtufRepo(b, n)
			if log {
				ws = mtufLogRepo(b, n)
			}
			ctx := context.Background()
			if _, err := ws.Publish(ctx, PublishRequest{Targets: []Target{benchTarget(n + 1000000)}}); err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				i++
				if _, err := ws.Publish(ctx, PublishRequest{Targets: []Target{benchTarget(n + 3000000 + i)}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
