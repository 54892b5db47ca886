package repo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/mtuf/mtuf/keys"
)

// mtufLogRepo is mtufRepo with a transparency log declared in root (no
// witnesses: their round trips are the network's, not the log's).
func mtufLogRepo(b *testing.B, n int) *Workspace {
	b.Helper()
	key := fmt.Sprintf("mtuf-log-%d", n)
	dir, ok := benchRepos[key]
	if !ok {
		dir = benchTempDir(b)
		kdir := filepath.Join(dir, "keys")
		os.MkdirAll(kdir, 0o700)
		cfg, _, m := testInitConfig(b, kdir)
		cfg.Log = &LogSettings{Origin: "example.com/bench", Key: newTestKey(b, m, "log-test", keys.ED25519)}
		benchKeys[key] = m
		cfg.MeasurementsBins, cfg.ReleasesBins = 0, 0
		mem := &memStorage{files: map[string][]byte{}}
		cfg.Storage = filepath.Join(dir, "unused")
		ws, err := initOn(b, filepath.Join(dir, "ws"), cfg, m, mem)
		if err != nil {
			b.Fatal(err)
		}
		targets := make([]Target, 0, n)
		for i := range n {
			targets = append(targets, benchTarget(i))
		}
		if _, err := ws.PublishTargets(context.Background(), targets, false); err != nil {
			b.Fatal(err)
		}
		repoDir := filepath.Join(dir, "repo")
		mem.dump(b, repoDir)
		ws.Config.Storage = "file://" + repoDir
		if err := ws.save(); err != nil {
			b.Fatal(err)
		}
		benchRepos[key] = dir
	}
	ws, err := OpenWorkspace(filepath.Join(dir, "ws"))
	if err != nil {
		b.Fatal(err)
	}
	ws.Keys = benchKeys[key]
	return ws
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
