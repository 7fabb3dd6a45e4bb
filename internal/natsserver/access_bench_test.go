package natsserver

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/enrollgate/enrollgate/internal/auth"
)

// BenchmarkVerifyRequest measures what access control adds to a verify
// request/reply: a client in the service's own account (as every client was
// before tokens) against a token's account, whose request and reply cross
// the account import. The responder answers at once, so the figure is the
// NATS path alone. Same run, same server: compare the two with benchstat.
func BenchmarkVerifyRequest(b *testing.B) {
	e := newAccessEnv(b)
	reply := []byte(`{"ok":false,"site":"acme","reason":"wrong_passcode"}`)
	if _, err := e.svc.QueueSubscribe("enrollgate.verify.*", "q", func(m *nats.Msg) { _ = m.Respond(reply) }); err != nil {
		b.Fatal(err)
	}
	e.svc.Flush()
	tok, err := e.tokens.Add(auth.Principal{ID: "frontend", Role: auth.RoleEnrollment, Sites: []string{"acme"}})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.access.Sync(e.ctx, e.tokens.List()); err != nil {
		b.Fatal(err)
	}
	req := []byte(`{"passcode":"000000000000","source":{"ip":"192.0.2.1"}}`)
	for _, clients := range []int{1, 16} {
		for _, c := range []struct {
			name string
			opt  nats.Option
		}{
			{"service-account", nats.UserInfo(ServiceUser, testPassword)},
			{"token-account", nats.Token(tok)},
		} {
			b.Run(fmt.Sprintf("%s/clients=%d", c.name, clients), func(b *testing.B) {
				conns := make([]*nats.Conn, clients)
				for i := range conns {
					nc, err := nats.Connect(e.s.ClientURL(), c.opt)
					if err != nil {
						b.Fatal(err)
					}
					defer nc.Close()
					conns[i] = nc
				}
				b.ResetTimer()
				if clients == 1 {
					for range b.N {
						if _, err := conns[0].Request("enrollgate.verify.acme", req, 5*time.Second); err != nil {
							b.Fatal(err)
						}
					}
					return
				}
				next := make(chan *nats.Conn, clients)
				for _, nc := range conns {
					next <- nc
				}
				b.SetParallelism(max(1, clients/runtime.GOMAXPROCS(0)))
				b.RunParallel(func(pb *testing.PB) {
					nc := <-next
					for pb.Next() {
						if _, err := nc.Request("enrollgate.verify.acme", req, 5*time.Second); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
