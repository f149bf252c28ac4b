package redisledger

import (
	"encoding/json"
	"testing"

	"github.com/thecolonycc/colonyauth"
)

// BenchmarkLedgerUpdate: one Update of a host-sized record (what a source
// does twice around an exchange, never on the cached path), against Redis
// on loopback, beside the in-memory Ledger in the same run.
func BenchmarkLedgerUpdate(b *testing.B) {
	record, _ := json.Marshal(map[string]any{"slots": make([]int64, 30), "ok": 1})
	fn := func([]byte) ([]byte, error) { return record, nil }
	b.Run("memory", func(b *testing.B) {
		l := colonyauth.NewMemoryCache().(colonyauth.Ledger)
		b.ReportAllocs()
		for b.Loop() {
			if err := l.Update("host", fn); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("redis_loopback", func(b *testing.B) {
		c, prefix := sharedRedis(b)
		s := New(c, WithPrefix(prefix))
		b.ReportAllocs()
		for b.Loop() {
			if err := s.Update("host", fn); err != nil {
				b.Fatal(err)
			}
		}
	})
}
